"""Exact binomial intervals for precision and recall, and small-sample warnings."""

import numpy as np
import pytest
from scipy.stats import beta

from aedetect.model.uncertainty import precision_recall_intervals, proportion_interval, small_sample_warnings


def _rows(n_anomalies, n_normals, caught, false_alerts):
    y = np.r_[np.ones(n_anomalies), np.zeros(n_normals)].astype(int)
    scores = np.r_[np.arange(n_anomalies) < caught, np.arange(n_normals) < false_alerts].astype(float)
    return y, scores  # flagged rows score 1, threshold 0.5


def test_point_estimates_are_the_plain_precision_and_recall():
    y, s = _rows(12, 228, caught=9, false_alerts=3)
    b = precision_recall_intervals(y, s, 0.5)
    assert b["recall"]["value"] == pytest.approx(9 / 12)
    assert b["precision"]["value"] == pytest.approx(9 / 12)
    assert b["n_anomalies"] == 12 and b["n_normals"] == 228 and b["n_flagged"] == 12
    assert b["method"] == "clopper-pearson"
    for k in ("precision", "recall"):
        assert b[k]["low"] <= b[k]["value"] <= b[k]["high"]


@pytest.mark.parametrize(("caught", "n", "low", "high"), [
    (5, 5, 0.478, 1.000),   # the bootstrap printed 1.000-1.000
    (11, 12, 0.615, 0.998),  # the bootstrap printed 0.750-1.000
])
def test_small_counts_keep_their_uncertainty(caught, n, low, high):
    y, s = _rows(n, 100, caught=caught, false_alerts=0)
    r = precision_recall_intervals(y, s, 0.5)["recall"]
    assert r["low"] == pytest.approx(low, abs=5e-4) and r["high"] == pytest.approx(high, abs=5e-4)


def test_matches_the_clopper_pearson_formula():
    for k, n in [(0, 10), (3, 10), (10, 10), (480, 500)]:
        ci = proportion_interval(k, n, level=0.9)
        lo = 0.0 if k == 0 else beta.ppf(0.05, k, n - k + 1)
        hi = 1.0 if k == n else beta.ppf(0.95, k + 1, n - k)
        assert ci["low"] == pytest.approx(lo, abs=1e-9) and ci["high"] == pytest.approx(hi, abs=1e-9)


def test_nothing_flagged_has_no_precision():
    y, s = _rows(12, 228, caught=0, false_alerts=0)
    b = precision_recall_intervals(y, s, 0.5)
    assert b["precision"] == {"value": None, "low": None, "high": None} and b["recall"]["value"] == 0.0


def test_interval_shrinks_with_more_anomalies():
    small = precision_recall_intervals(*_rows(12, 228, 6, 2), 0.5)["recall"]
    large = precision_recall_intervals(*_rows(1200, 22800, 600, 200), 0.5)["recall"]
    assert (small["high"] - small["low"]) > 5 * (large["high"] - large["low"])

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
