"""Drift monitoring: the statistics against scipy's own, calibration on batches from the
reference distribution, alarms on a shifted column, a new category and a changed fraud rate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import precision_score, recall_score

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.monitoring.batch import markdown_table, monitor_frame, parse_window, write_outputs
from aedetect.monitoring.reference import (
    DriftSettings,
    Reference,
    build_reference,
    categorical_profile,
    column_drift,
    compare_batch,
    flagged_promise,
    numeric_profile,
    psi,
    reference_from_frame,
    share_test,
)

FEATURES = list(CREDITCARD.features)


@pytest.fixture(scope="module")
def reference(detector):
    """The reference of the session's small model, from fresh rows of the same distribution."""
    df = generate_transactions(4000, 0.01, seed=2)
    return build_reference(detector, df[df["Class"] == 0], anomalies=df[df["Class"] == 1],
                           anomaly_rows=(int(df["Class"].sum()), len(df)), source="test",
                           time_column="Time")


def _batch(detector, reference, df, settings=None):
    return compare_batch(reference, df[FEATURES], detector.anomaly_score(df[FEATURES]), df["Class"],
                         settings)


def test_numeric_statistics_match_scipy(rng):
    ref_values = rng.normal(size=5000)
    new = rng.normal(0.3, 1.2, size=3000)
    profile = numeric_profile(ref_values, sample_size=2000, seed=3)
    assert len(profile["sample"]) == 2000 and sum(profile["counts"]) == 5000
    got = column_drift(profile, new)
    expected = stats.ks_2samp(np.asarray(profile["sample"]), new, method="asymp")  # > 500 new values
    small = column_drift(profile, new[:300])
    assert small["p_value"] == pytest.approx(stats.ks_2samp(np.asarray(profile["sample"]), new[:300]).pvalue)
    assert got["statistic"] == pytest.approx(expected.statistic)
    assert got["p_value"] == pytest.approx(expected.pvalue)
    # PSI by its definition, on the reference's decile edges (plus the empty missing bin)
    edges = np.concatenate([[-np.inf], profile["edges"], [np.inf]])
    e = np.histogram(ref_values, edges)[0] / 5000
    a = np.histogram(new, edges)[0] / 3000
    assert got["psi"] == pytest.approx(np.sum((a - e) * np.log(a / e)), rel=1e-3)
    assert psi([50, 50, 0], [25, 75, 0]) == pytest.approx(0.25 * np.log(1.5) + 0.25 * np.log(2))


def test_categorical_statistic_matches_scipy_and_sees_a_new_category():
    """Categorical input columns are not in the model yet: the statistic on its own."""
    ref = pd.Series(["shop"] * 500 + ["fuel"] * 300 + ["travel"] * 200 + [None] * 10)
    profile = categorical_profile(ref)
    same = column_drift(profile, pd.Series(["shop"] * 250 + ["fuel"] * 150 + ["travel"] * 100 + [None] * 5))
    assert same["p_value"] > 0.5 and same["psi"] < 0.02 and same["new_categories"] == []
    new = pd.Series(["shop"] * 250 + ["fuel"] * 150 + ["travel"] * 60 + ["casino"] * 40)
    got = column_drift(profile, new)
    table = np.array([[500, 300, 200, 0, 10], [250, 150, 60, 40, 0]])  # ..., other, missing
    expected = stats.chi2_contingency(table)
    assert got["statistic"] == pytest.approx(expected.statistic)
    assert got["p_value"] == pytest.approx(expected.pvalue) and got["p_value"] < 1e-6
    assert got["new_categories"] == ["casino"] and got["psi"] > 0.2
    # ... and through a batch comparison with a categorical column in the reference
    refobj = Reference(columns={"merchant": profile}, score=numeric_profile(np.arange(1000.0)),
                       threshold=990.0, flagged=flagged_promise(10, 1000))
    batch = compare_batch(refobj, pd.DataFrame({"merchant": new}), np.arange(500.0) * 2)
    assert batch["drifted_columns"] == ["merchant"] and batch["alarm"]


def test_binomial_pieces_match_scipy():
    promise = flagged_promise(12, 10_000, 40, 50, 30, 20_000)
    each = 0.95 ** (1 / 3)
    ci = stats.binomtest(12, 10_000).proportion_ci(each, method="wilson")
    assert promise["fpr"]["low"] == pytest.approx(ci.low) and promise["fpr"]["high"] == pytest.approx(ci.high)
    assert promise["low"] < promise["value"] < promise["high"]
    assert promise["value"] == pytest.approx((1 - 30 / 20_000) * 12 / 10_000 + 30 / 20_000 * 40 / 50)
    high = share_test(60, 10_000, promise)
    assert high["p_value"] == pytest.approx(
        stats.binomtest(60, 10_000, promise["high"], alternative="greater").pvalue)
    assert share_test(20, 10_000, promise)["p_value"] == 1.0  # inside the interval


def test_correction_is_benjamini_hochberg(detector, reference):
    df = generate_transactions(1500, 0.01, seed=40)
    res = _batch(detector, reference, df)
    tests = [*res["columns"].values(), res["score"], res["flagged"], res["labels"]["anomaly_share"]]
    adjusted = stats.false_discovery_control([t["p_value"] for t in tests], method="bh")
    np.testing.assert_allclose([t["p_adjusted"] for t in tests], adjusted)


def test_no_false_alarms_on_batches_from_the_reference_distribution(detector, reference):
    settings = DriftSettings(alpha=0.05)
    alarms, smallest = 0, 1.0
    for seed in range(100, 120):
        res = _batch(detector, reference, generate_transactions(1000, 0.01, seed=seed), settings)
        alarms += res["alarm"]
        smallest = min(smallest, *(t["p_value"] for t in res["columns"].values()))
    assert alarms <= settings.alpha * 20
    assert smallest < 0.05  # the raw tests are live: over 600 null tests some p-values are small


def test_alarm_on_one_shifted_column(detector, reference):
    df = generate_transactions(1500, 0.01, seed=200)
    df["V3"] += df["V3"].std()
    res = _batch(detector, reference, df)
    assert res["alarm"] and res["drifted_columns"] == ["V3"]
    assert res["columns"]["V3"]["median_shift"] > 0.5


def test_alarm_on_a_changed_fraud_rate(detector, reference):
    df = generate_transactions(1500, 0.08, seed=201)
    res = _batch(detector, reference, df)
    assert res["alarm"] and res["flagged"]["alarm"] and res["labels"]["anomaly_share"]["alarm"]
    flags = detector.anomaly_score(df[FEATURES]) > reference.threshold
    assert res["labels"]["precision"] == pytest.approx(precision_score(df["Class"], flags))
    assert res["labels"]["recall"] == pytest.approx(recall_score(df["Class"], flags))


def test_windows_markdown_and_report(detector, reference, tmp_path):
    df = generate_transactions(3000, 0.01, seed=300)
    late = df["Time"] >= 86_400
    df.loc[late, "V5"] += 2 * df["V5"].std()
    run = monitor_frame(detector, reference, df, window=parse_window("1d"), time_column="Time",
                        label_column="Class")
    first, second = run.summary["windows"]
    assert first["window"] == "0h-24h" and second["window"] == "24h-48h"
    assert second["rows"] == int(late.sum()) and "Time" not in second["columns"]
    assert "V5" in second["drifted_columns"] and "V5" not in first["drifted_columns"]
    assert run.summary["hint"][-1].startswith("24h-48h: columns that moved most: V5")
    assert markdown_table(run.summary).count("\n") == 4
    html = write_outputs(run, reference, tmp_path, "drift").read_text()
    assert html.count("<img") == 4 and "Benjamini-Hochberg" in html  # flagged share, PSI, 2 windows
    assert json.loads((tmp_path / "drift.json").read_text())["windows"][1]["drifted_columns"] == \
        second["drifted_columns"]


@pytest.mark.parametrize("bad", ["", "4", "-1h", "4w", "h"])
def test_bad_window(bad):
    with pytest.raises(ValueError, match="--window must be"):
        parse_window(bad)


def test_reference_from_a_file_for_a_model_without_one(detector):
    df = generate_transactions(2000, 0.02, seed=50)
    ref = reference_from_frame(detector, df, "Class", source="old.csv", time_column="Time")
    normals = df[df["Class"] == 0]
    flags = detector.anomaly_score(normals[FEATURES]) > detector.threshold_
    assert ref.flagged["fpr"]["k"] == int(flags.sum()) and ref.flagged["fpr"]["n"] == len(normals)
    assert ref.flagged["anomaly_share"]["k"] == 40 and ref.columns["V1"]["n"] == len(normals)
    with pytest.raises(ValueError, match="missing column"):
        reference_from_frame(detector, df.drop(columns=["V7"]), "Class", source="old.csv")
