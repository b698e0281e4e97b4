import numpy as np
import pytest

from aedetect import thresholds as th

SCORES = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
LABELS = np.array([0, 0, 0, 0, 0, 1, 0, 1, 1, 1])


def flagged(t):
    return SCORES > t


def test_fixed():
    assert th.fixed(10) == 10.0
    with pytest.raises(ValueError, match="finite"):
        th.fixed(float("nan"))


def test_normal_percentile_flags_the_expected_share():
    normals = np.arange(1, 1001, dtype=float)
    t = th.normal_percentile(normals, 99.0)
    assert (normals > t).sum() == 10
    with pytest.raises(ValueError, match=r"q must be in \(0, 100\)"):
        th.normal_percentile(normals, 100)


def test_best_f1_by_hand():
    # Flagging {0.6,...,1.0}: tp=4, fp=1 -> F1 = 8/9; flagging {0.8,0.9,1.0}: F1 = 6/7. Best: cut at 0.6.
    t = th.best_f1(SCORES, LABELS)
    assert 0.5 < t < 0.6
    assert flagged(t).sum() == 5


def test_min_precision_by_hand():
    # precision >= 0.9 is reached only by flagging {0.8, 0.9, 1.0} (3/3); recall 0.75.
    t = th.min_precision(SCORES, LABELS, 0.9)
    assert 0.7 < t < 0.8
    # precision >= 0.8 admits {0.6..1.0} (4/5 = 0.8), the higher-recall cut.
    assert flagged(th.min_precision(SCORES, LABELS, 0.8)).sum() == 5


def test_min_precision_unreachable_flags_nothing():
    y = np.array([1, 0, 0, 0])
    s = np.array([0.1, 0.2, 0.3, 0.4])
    assert (s > th.min_precision(s, y, 0.99)).sum() == 0


def test_labelled_rules_need_both_classes():
    with pytest.raises(ValueError, match="needs both classes"):
        th.best_f1(SCORES, np.zeros(10))


def test_choose_threshold_records_rule_and_params():
    t = th.choose_threshold("min_precision", scores=SCORES, y=LABELS, min_precision=0.9, source="sel")
    assert t.rule == "min_precision" and t.params == {"min_precision": 0.9} and t.source == "sel"
    assert th.Threshold.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match="threshold rule must be one of"):
        th.choose_threshold("median")
