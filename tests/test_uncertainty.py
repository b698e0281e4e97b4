"""Bootstrap intervals for precision and recall, and small-sample warnings."""

import numpy as np
import pytest

from aedetect.uncertainty import bootstrap_precision_recall, small_sample_warnings


def _rows(n_anomalies, n_normals, caught, false_alerts):
    y = np.r_[np.ones(n_anomalies), np.zeros(n_normals)].astype(int)
    scores = np.r_[np.arange(n_anomalies) < caught, np.arange(n_normals) < false_alerts].astype(float)
    return y, scores  # flagged rows score 1, threshold 0.5


def test_point_estimates_are_the_plain_precision_and_recall():
    y, s = _rows(12, 228, caught=9, false_alerts=3)
    b = bootstrap_precision_recall(y, s, 0.5)
    assert b["recall"]["value"] == pytest.approx(9 / 12)
    assert b["precision"]["value"] == pytest.approx(9 / 12)
    assert b["n_anomalies"] == 12 and b["n_normals"] == 228 and b["n_flagged"] == 12
    for k in ("precision", "recall"):
        assert b[k]["low"] <= b[k]["value"] <= b[k]["high"]


def test_no_spread_when_nothing_is_uncertain():
    y, s = _rows(12, 228, caught=12, false_alerts=0)
    b = bootstrap_precision_recall(y, s, 0.5)
    assert b["recall"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert b["precision"] == {"value": 1.0, "low": 1.0, "high": 1.0}


def test_nothing_flagged_has_no_precision():
    y, s = _rows(12, 228, caught=0, false_alerts=0)
    b = bootstrap_precision_recall(y, s, 0.5)
    assert b["precision"]["value"] is None and b["recall"]["value"] == 0.0


def test_interval_shrinks_with_more_anomalies():
    small = bootstrap_precision_recall(*_rows(12, 228, 6, 2), 0.5)["recall"]
    large = bootstrap_precision_recall(*_rows(1200, 22800, 600, 200), 0.5)["recall"]
    assert (small["high"] - small["low"]) > 5 * (large["high"] - large["low"])
    # Recall 0.5 of 12: the binomial 95% range is about 0.5 +- 0.29.
    assert small["low"] == pytest.approx(0.25, abs=0.09) and small["high"] == pytest.approx(0.75, abs=0.09)


def test_matches_an_explicit_stratified_resampling():
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.1).astype(int)
    s = rng.random(400) + y * 0.6
    closed = bootstrap_precision_recall(y, s, 0.8, n_boot=4000, seed=2)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    recalls, precisions = [], []
    for _ in range(2000):
        p, n = rng.choice(pos, pos.size), rng.choice(neg, neg.size)
        tp, fp = (s[p] > 0.8).sum(), (s[n] > 0.8).sum()
        recalls.append(tp / pos.size)
        precisions.append(tp / (tp + fp))
    assert closed["recall"]["low"] == pytest.approx(np.percentile(recalls, 2.5), abs=0.04)
    assert closed["recall"]["high"] == pytest.approx(np.percentile(recalls, 97.5), abs=0.04)
    assert closed["precision"]["low"] == pytest.approx(np.percentile(precisions, 2.5), abs=0.04)


def test_guide_selection_set_warns_about_twelve_anomalies():
    y = np.r_[np.ones(12), np.zeros(228)]
    warnings = small_sample_warnings("min_precision", {"min_precision": 0.93}, y, n_flagged=5,
                                     stream_anomaly_share=492 / 284_807)
    text = " ".join(warnings)
    assert "only 12 anomalies" in text and "8.3 points" in text
    assert "steps of 20 points" in text
    assert "5.00% anomalies against 0.17%" in text and "overstates" in text


def test_max_fpr_warns_when_too_few_normals_for_the_rate():
    y = np.r_[np.ones(100), np.zeros(228)]
    assert any("cannot tell that rate from zero" in w
               for w in small_sample_warnings("max_fpr", {"max_fpr": 0.001}, y))
    assert small_sample_warnings("max_fpr", {"max_fpr": 0.01}, np.r_[np.ones(100), np.zeros(1000)]) == []
