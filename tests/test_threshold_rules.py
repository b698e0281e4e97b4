"""Every threshold rule on small arrays whose answers can be checked by hand."""

import numpy as np
import pytest

from aedetect.model.thresholds import (
    RULES,
    Threshold,
    alert_budget,
    choose_threshold,
    contamination,
    expected_cost,
    max_fpr,
    min_precision,
    normal_percentile,
    rows_per_day,
)

# Ten rows: scores 1..10, anomalies at 10, 9 and 6.
SCORES = np.arange(1.0, 11.0)
Y = np.array([0, 0, 0, 0, 0, 1, 0, 0, 1, 1])


def flagged(t, scores=SCORES):
    return set(np.asarray(scores)[np.asarray(scores) > t])


def test_min_precision_keeps_the_highest_recall_cut_at_that_precision():
    # Flagging {10, 9} has precision 1; {10, 9, 8, 7, 6} has 3/5 = 0.6.
    assert flagged(min_precision(SCORES, Y, 0.9)) == {10, 9}
    assert flagged(min_precision(SCORES, Y, 0.6)) == {10, 9, 8, 7, 6}


def test_max_fpr_allows_floor_of_rate_times_normals_false_positives():
    # 7 normals; rate 0.15 allows floor(1.05) = 1 false positive: flag down to 8 (one normal).
    assert flagged(max_fpr(SCORES, Y, 0.15)) == {10, 9, 8}
    # Rate 0.3 allows 2: 8 and 7 are normals, 6 is an anomaly caught for free, 5 would be a third.
    assert flagged(max_fpr(SCORES, Y, 0.3)) == {10, 9, 8, 7, 6}
    assert flagged(max_fpr(SCORES, Y, 0.0)) == {10, 9}


def test_alert_budget_flags_the_share_of_rows_the_budget_allows():
    # A stream of 100 rows a day and 20 alerts a day: 20% of the 10 scored rows.
    assert flagged(alert_budget(SCORES, alerts_per_day=20, rows_per_day=100)) == {10, 9}
    assert flagged(alert_budget(SCORES, alerts_per_day=1, rows_per_day=100)) == set()
    assert flagged(alert_budget(SCORES, alerts_per_day=500, rows_per_day=100)) == set(SCORES)


def test_rows_per_day_counts_rows_over_the_time_span():
    assert rows_per_day([0.0, 43_200.0, 86_400.0, 172_800.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="spans no time"):
        rows_per_day([5.0, 5.0])


def test_alert_budget_never_exceeds_budget_with_ties():
    scores = np.array([1.0, 2.0, 3.0, 3.0, 3.0])
    t = alert_budget(scores, alerts_per_day=2, rows_per_day=5)
    assert (scores > t).sum() <= 2


def test_contamination_flags_floor_of_share_times_rows():
    scores = np.arange(1000.0)
    assert (scores > contamination(scores, 0.01)).sum() == 10
    assert (scores > contamination(scores, 0.0015)).sum() == 1
    with pytest.raises(ValueError, match=r"contamination must be in \(0, 0.5\)"):
        contamination(scores, 0.5)


def test_expected_cost_balances_misses_against_reviews():
    # Review 1 per alert, miss 10: catching 6 costs 5 alerts (10..6) = 5 < 10, so flag down to 6.
    assert flagged(expected_cost(SCORES, Y, cost_missed=10, cost_review=1)) == {10, 9, 8, 7, 6}
    # Miss 3, review 1: costs are 9 (nothing), 7, 5, 6, 7, 5 (down to 6): tie -> fewer alerts.
    assert flagged(expected_cost(SCORES, Y, cost_missed=3, cost_review=1)) == {10, 9}
    # Reviews dearer than misses: flag nothing.
    assert flagged(expected_cost(SCORES, Y, cost_missed=1, cost_review=2)) == set()


def test_expected_cost_times_amount_weights_each_miss():
    amounts = np.array([1, 1, 1, 1, 1, 100, 1, 1, 1, 1.0])
    # Miss 2, review 1. Per anomaly, catching 6 takes 3 more reviews (8, 7, 6) for a miss of 2:
    # not worth it. Times amount, that miss costs 200: worth it.
    assert flagged(expected_cost(SCORES, Y, cost_missed=2, cost_review=1)) == {10, 9}
    assert flagged(expected_cost(SCORES, Y, cost_missed=2, cost_review=1, amounts=amounts)) == \
        {10, 9, 8, 7, 6}


def test_expected_cost_does_not_split_tied_scores():
    scores = np.array([1.0, 5.0, 5.0])
    y = np.array([0, 1, 0])
    t = expected_cost(scores, y, cost_missed=10, cost_review=1)
    assert flagged(t, scores) == {5.0}


def test_normal_percentile_is_label_free():
    assert normal_percentile(np.arange(101.0), 90) == pytest.approx(90.0)


@pytest.mark.parametrize("rule", ["min_precision", "max_fpr", "expected_cost", "best_f1"])
def test_labelled_rules_need_both_classes(rule):
    with pytest.raises(ValueError, match="needs both classes"):
        choose_threshold(rule, scores=SCORES, y=np.zeros(10))


@pytest.mark.parametrize("rule", sorted(set(RULES) - {"fixed", "normal_percentile"}))
def test_choose_threshold_records_rule_params_and_source(rule):
    extra = {"rows_per_day": 100.0} if rule == "alert_budget" else {}
    t = choose_threshold(rule, scores=SCORES, y=Y, source="selection set", **extra)
    assert t.rule == rule and t.source == "selection set"
    back = Threshold.from_dict(t.to_dict())
    assert back == t


def test_choose_threshold_rejects_unknown_rule_and_parameters():
    with pytest.raises(ValueError, match="threshold rule must be one of"):
        choose_threshold("top10", scores=SCORES)
    with pytest.raises(ValueError, match=r"rule 'max_fpr' takes \['max_fpr'\]; got \['fpr'\]"):
        choose_threshold("max_fpr", scores=SCORES, y=Y, fpr=0.1)


def test_every_rule_in_the_registry_maps_to_config_fields():
    from aedetect.training.config import TrainConfig

    for rule in RULES.values():
        for field in rule.config.values():
            assert TrainConfig().param(field) is not None or field == "threshold_value"
        assert rule.needs_labels == (rule.name in ("best_f1", "min_precision", "max_fpr", "expected_cost"))


def test_threshold_round_trip_keeps_estimate_and_warnings():
    t = Threshold("max_fpr", 1.5, {"max_fpr": 0.01}, "selection set",
                  {"precision": {"value": 0.5, "low": 0.1, "high": 0.9}}, ["few anomalies"])
    assert Threshold.from_dict(t.to_dict()) == t
    # A manifest written before these fields existed still loads.
    assert Threshold.from_dict({"rule": "fixed", "value": 3}).warnings == []
