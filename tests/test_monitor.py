"""Drift monitoring: the statistics against scipy's own, calibration on batches from the
reference distribution, alarms on a shifted column, a new category and a changed fraud rate;
rows scored as `aedetect score` scores them (missing values imputed, the same bad-row reasons),
unscored rows counted, windows too small or mostly unscored never alarming."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import precision_score, recall_score

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transaction_log, generate_transactions
from aedetect.data.io import read_raw, write_table
from aedetect.errors import DataError
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


# -- a model that imputes: the transaction log (categories, a datetime, missing values) ---------

@pytest.fixture(scope="module")
def log_model(tmp_path_factory):
    """A model of the transaction log trained as `aedetect train` trains one (its reference
    taken from the validation normals), saved, with its training file."""
    from aedetect.data.infer import infer_schema
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    df = generate_transaction_log(6000, 0.01, seed=5).drop(columns=["fraud_kind"])
    config = TrainConfig(epochs=3, hidden_units=[24, 8, 24], batch_size=128)
    det = train_detector(df, config, infer_schema(df)).detector
    d = tmp_path_factory.mktemp("log-model")
    return det, det.save(d / "model"), write_table(df, d / "train.csv"), df


def _monitor_file(log_model, df, path, time_column="timestamp", **kwargs):
    """`monitor_frame` on `df` written to `path` and read back as `aedetect monitor` reads it."""
    det = log_model[0]
    df.to_csv(path, index=False)
    return monitor_frame(det, det.reference_, read_raw(path), time_column=time_column,
                         label_column="is_fraud", source=str(path), **kwargs)


def test_training_file_with_missing_values_scores_every_row_without_alarm(log_model, tmp_path):
    """Issue 25.10: rows with a missing value the model imputes were left unscored (most rows of
    the training file), the scored rest skewed the score's distribution into a false alarm."""
    from aedetect.serving.batch import score_file

    det, _, path, df = log_model
    assert df[["device", "device_age_days", "account_age_days"]].isna().any(axis=1).mean() > 0.5
    run = monitor_frame(det, det.reference_, read_raw(path), label_column="is_fraud", source=str(path))
    (w,) = run.summary["windows"]
    assert run.summary["scored_rows"] == w["scored_rows"] == w["rows"] == len(df)
    assert run.summary["unscored"]["rows"] == w["unscored_rows"] == 0
    assert not run.alarm and w["status"] == "ok" and w["score"]["psi"] < 0.2
    assert "| all rows | 6,000 | 6,000 | 0 |" in markdown_table(run.summary)
    # the scores are those `aedetect score` writes for the same file
    score_file(det, path, tmp_path / "scored.csv", top_k=0)
    np.testing.assert_allclose(run.window_scores[0], pd.read_csv(tmp_path / "scored.csv")["score"])


def test_window_mostly_unscored_is_not_judged_and_names_the_scorers_reason(log_model, tmp_path):
    """Rows `aedetect score` cannot score are counted with its reason; a window where they are
    the majority is not judged (and the command exits 4), however its statistics look."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.serving.batch import bad_rows_path, score_file

    _, model, _, df = log_model
    day = pd.to_datetime(df["timestamp"]).dt.floor("D")
    df = df[day == day.min()].astype({"amount": object})  # the first day, two rows in three bad
    bad = np.arange(len(df)) % 3 != 0
    df.loc[bad, "amount"] = "abc"
    path = tmp_path / "bad.csv"
    run = _monitor_file(log_model, df, path, window=parse_window("1d"))
    score_file(log_model[0], path, tmp_path / "s.csv", on_bad_rows="skip", top_k=0)
    reasons = pd.read_csv(bad_rows_path(tmp_path / "s.csv"))
    assert run.summary["unscored"]["rows"] == len(reasons) == bad.sum()
    assert run.summary["unscored"]["first"][0] == {"row": 2, "reason": reasons["reason"][0]} == \
        {"row": int(reasons["row"][0]), "reason": "column 'amount': value 'abc' is not a number"}
    (w,) = run.summary["windows"]
    assert w["status"] == "not judged" and not w["alarm"] and w["unscored_rows"] == bad.sum()
    assert w["scored_rows"] == len(df) - bad.sum() and w["drifted_columns"] == []
    assert run.summary["windows_not_judged"] == 1 and not run.alarm
    res = CliRunner().invoke(app, ["monitor", "--model", str(model), "--data", str(path), "--window", "1d"])
    assert res.exit_code == 4, res.output
    assert "not judged" in res.output and "could not be scored" in res.output


def test_header_only_file_is_an_error(log_model, tmp_path):
    """Issue 25.10: a file with a header and no rows gave exit 0 and no output."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    path = tmp_path / "empty.csv"
    path.write_text(log_model[2].read_text().splitlines()[0] + "\n")
    res = CliRunner().invoke(app, ["monitor", "--model", str(log_model[1]), "--data", str(path)])
    assert res.exit_code == 1 and isinstance(res.exception, DataError)
    assert str(res.exception) == f"{path}: the file has no data rows"


def test_all_empty_time_column_is_an_error(log_model, tmp_path):
    """Issue 25.10: with the time column all empty no row could be scored, and `monitor` said
    so only in drift.json (3,000 of 3,000 unscored) and exited 0. With or without windows it is
    now a one-line error naming the first row and its reason."""
    df = log_model[3].head(3000).assign(timestamp=None)
    for window in (None, parse_window("1d")):
        with pytest.raises(DataError, match=r"no-time.csv: none of the 3,000 rows can be scored; "
                           r"row 1: column 'timestamp': empty value$"):
            _monitor_file(log_model, df, tmp_path / "no-time.csv", window=window)


def test_fractional_second_timestamps_give_daily_windows(log_model, tmp_path):
    """Issue 25.11: `.500` seconds made pyarrow read milliseconds, which were taken as nanoseconds:
    thousands of windows instead of one a day."""
    df = log_model[3].assign(timestamp=lambda d: d["timestamp"].astype(str) + ".500")
    run = _monitor_file(log_model, df, tmp_path / "ms.csv", window=parse_window("1d"))
    days = pd.to_datetime(df["timestamp"]).dt.floor("D")
    names = [w["window"] for w in run.summary["windows"]]
    assert names == [f"{d:%Y-%m-%d} 00:00-00:00" for d in sorted(days.unique())]
    assert len(names) == 42 and sum(w["rows"] for w in run.summary["windows"]) == len(df)


def test_one_empty_timestamp_is_an_unscored_row(log_model, tmp_path):
    """Issue 25.11: an empty timestamp made a window named `-2.56205e+15h`. In the time column
    the model reads it is the scorer's bad row; in one it does not read, a row in no window."""
    df = log_model[3].assign(seen_at=lambda d: d["timestamp"])
    df.loc[df.index[9], ["timestamp", "seen_at"]] = [None, "2024-03-05 10:00:00"]
    df.loc[df.index[19], "seen_at"] = None
    empty = {"row": 10, "reason": "column 'timestamp': empty value"}
    run = _monitor_file(log_model, df, tmp_path / "gap.csv", window=parse_window("1d"))
    assert run.summary["unscored"] == {"rows": 1, "first": [empty]}
    assert all(w["window"].startswith("2024-") for w in run.summary["windows"])
    assert sum(w["rows"] for w in run.summary["windows"]) == len(df) - 1  # row 10 is in none
    run = _monitor_file(log_model, df, tmp_path / "gap.csv", time_column="seen_at", window=parse_window("1d"))
    assert run.summary["unscored"] == {"rows": 2, "first": [
        empty, {"row": 20, "reason": "column 'seen_at': no time value, so in no window"}]}
    assert all(w["window"].startswith("2024-") for w in run.summary["windows"])
    assert sum(w["rows"] for w in run.summary["windows"]) == len(df) - 1  # row 20 is in none
    assert sum(w["unscored_rows"] for w in run.summary["windows"]) == 1  # row 10, in its window


def test_empty_timestamp_the_model_does_not_impute_is_a_bad_row(log_model, tmp_path):
    """Without a window too: a datetime input left empty, where training had no empty one, is
    that row's bad-row reason for `aedetect score --on-bad-rows skip` and for `monitor` (it
    stopped both for the whole file)."""
    from aedetect.serving.batch import bad_rows_path, score_file

    det, _, _, df = log_model
    df = df.head(1000).copy()
    df.loc[df.index[3], "timestamp"] = None
    run = _monitor_file(log_model, df, tmp_path / "gap.csv")
    assert run.summary["unscored"] == {"rows": 1, "first": [{"row": 4, "reason": "column 'timestamp': empty value"}]}
    summary = score_file(det, tmp_path / "gap.csv", tmp_path / "s.csv", on_bad_rows="skip", top_k=0)
    assert (summary.rows_scored, summary.rows_skipped) == (999, 1)
    assert pd.read_csv(bad_rows_path(tmp_path / "s.csv"))["reason"].tolist() == ["column 'timestamp': empty value"]


def test_tiny_windows_never_alarm(log_model, tmp_path):
    """Issue 25.11: a window of a few rows alarmed (five flagged rows are far off any promised
    share, and the binomial test says so); below `min_rows` scored rows it is shown, not judged
    as an alarm."""
    det, _, _, df = log_model
    flagged = df[det.anomaly_score(df) > det.threshold_].head(5)
    assert len(flagged) == 5
    loud = _monitor_file(log_model, flagged, tmp_path / "five.csv", min_rows=1)
    assert loud.alarm  # the statistics alone would fire on five rows
    run = _monitor_file(log_model, flagged, tmp_path / "five.csv")
    (w,) = run.summary["windows"]
    assert run.summary["min_rows"] == 100 and w["status"] == "too few rows"
    assert not run.alarm and not w["alarm"] and w["drifted_columns"] == [] and not w["flagged"]["alarm"]
    assert w["flagged"]["share"] == 1.0  # still reported
    assert markdown_table(run.summary).rstrip().endswith("| too few rows |")
