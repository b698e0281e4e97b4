"""The operational rules wired into training, the HTML report, and the CLI commands around them."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aedetect.cli.app import app
from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.errors import AedetectError
from aedetect.evaluation.report import evaluation_report
from aedetect.training.config import TrainConfig
from aedetect.training.workflow import evaluate_detector, select_threshold, train_detector

FIGURES = {"histogram.png", "pr_curve.png", "roc_curve.png", "threshold_sweep.png",
           "confusion_matrix.png", "feature_errors.png", "loss.png"}


@pytest.fixture(scope="module")
def trained():
    df = generate_transactions(4000, 0.03, seed=0)
    return df, train_detector(df, TrainConfig(epochs=2, batch_size=128, protocol="time"), CREDITCARD)


@pytest.mark.parametrize("rule", ["max_fpr", "alert_budget", "expected_cost", "contamination",
                                  "min_precision"])
def test_rules_are_chosen_on_the_right_rows_with_an_estimate(trained, rule):
    df, result = trained
    config = TrainConfig(protocol="time", threshold_rule=rule, alerts_per_day=200, max_fpr=0.01)
    t = select_threshold(result.detector, df, result.split, config)
    assert t.rule == rule
    sel = df.iloc[result.split.selection]
    scores = result.detector.anomaly_score(sel.drop(columns="Class"))
    flagged = int((scores > t.value).sum())
    assert t.estimate["n_flagged"] == flagged
    assert "selection" in t.source
    if rule == "alert_budget":
        # 4000 rows over two days: 2000 a day; 200 alerts a day is 10% of the selection window.
        assert flagged <= int(len(sel) * 200 / (len(df) / (np.ptp(df["Time"]) / 86400)))
        assert t.params["alerts_per_day"] == 200
    if rule == "max_fpr":
        assert int(((scores > t.value) & (sel["Class"] == 0)).sum()) <= int(0.01 * (sel["Class"] == 0).sum())
    assert any("anomalies" in w for w in t.warnings)  # the generated selection set is small


def test_rule_choice_travels_in_the_artifact(trained, tmp_path):
    df, result = trained
    det = result.detector
    det.threshold = select_threshold(det, df, result.split, TrainConfig(protocol="time",
                                                                        threshold_rule="expected_cost"))
    det.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["threshold"]["rule"] == "expected_cost"
    assert manifest["threshold"]["params"]["cost_missed"] == 100.0
    assert manifest["threshold"]["estimate"]["recall"]["low"] is not None
    assert manifest["threshold"]["warnings"]


def test_cost_per_amount_reads_the_amount_column_setting(trained):
    df, result = trained
    config = TrainConfig(protocol="time", threshold_rule="expected_cost", cost_per_amount=True)
    t = select_threshold(result.detector, df, result.split, config)  # Amount, the default
    assert t.params["times_amount"]
    priced = df.assign(price=df["Amount"])
    same = select_threshold(result.detector, priced, result.split,
                            config.model_copy(update={"amount_column": "price"}))
    assert same.value == t.value
    with pytest.raises(AedetectError, match="column 'cost' .*amount_column"):
        select_threshold(result.detector, df, result.split,
                         config.model_copy(update={"amount_column": "cost"}))


def test_the_histogram_is_labelled_with_the_models_score(trained):
    """The report reads the score's name from `score_type` (it read `score`, the parameter's
    name before the rename, and so labelled every histogram "mse")."""
    df, result = trained
    det, test = result.detector, df.iloc[result.split.test]
    assert det.score_type == "residual_mahalanobis"
    x = test.drop(columns="Class")
    rep = evaluation_report(det, test["Class"], det.anomaly_score(x), det.feature_errors(x),
                            evaluate_detector(det, df, result.split.test), "t")
    assert "The anomaly score (residual_mahalanobis)" in rep.html()
    assert "(mse)" not in rep.html()


def test_report_is_self_contained_with_every_figure(trained, tmp_path):
    df, result = trained
    det, test = result.detector, df.iloc[result.split.test]
    m = evaluate_detector(det, df, result.split.test)
    x = test.drop(columns="Class")
    rep = evaluation_report(det, test["Class"], det.anomaly_score(x), det.feature_errors(x), m, "t")
    path = rep.write(tmp_path / "rep", m)
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert FIGURES | {"report.html", "metrics.json"} <= files
    assert not any(name.endswith(".part") for name in files)
    for name in FIGURES:
        assert (tmp_path / "rep" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = path.read_text()
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(href|src)=\"(https?:|//|file:)", text) and "<script" not in text
    assert "test set only" in text
    saved = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert saved["pr_auc"] == pytest.approx(m["pr_auc"])
    assert saved["intervals"]["recall"]["low"] <= saved["recall"] <= saved["intervals"]["recall"]["high"]
    assert 1 <= saved["alert_budget"]["n_alerts"] <= len(test)


def test_cli_evaluate_writes_the_report(trained, tmp_path):
    df, result = trained
    result.detector.save(tmp_path / "model")
    df.to_csv(tmp_path / "data.csv", index=False)
    run = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "model"), "--data",
                                   str(tmp_path / "data.csv"), "--rows", "all", "--report",
                                   str(tmp_path / "rep")])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "rep" / "report.html").is_file()
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["n_test"] == len(df)


def test_cli_compare_runs_every_method_on_the_same_split(tmp_path):
    df = generate_transactions(2500, 0.04, seed=1)
    df.to_csv(tmp_path / "data.csv", index=False)
    run = CliRunner().invoke(app, ["compare", "--data", str(tmp_path / "data.csv"), "--seeds", "1",
                                   "--epochs", "1", "--lof-max-train", "500", "--report",
                                   str(tmp_path / "rep")])
    assert run.exit_code == 0, run.output
    summary = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert set(summary["summary"]) == {"autoencoder", "IsolationForest", "PCA reconstruction",
                                       "PCA + residual Mahalanobis", "LocalOutlierFactor",
                                       "HistGradientBoosting (supervised)"}
    assert len(summary["runs"]) == 1 and summary["seeds"] == [0]
    for method in summary["summary"].values():
        assert method["pr_auc"]["std"] is None and 0 <= method["pr_auc"]["mean"] <= 1
    # Same split: every method saw the same test rows, so its PR-AUC is above chance there.
    assert summary["summary"]["PCA reconstruction"]["pr_auc"]["mean"] > 0.3
    assert summary["uses_labels"]["HistGradientBoosting (supervised)"] is True
    assert "500-row subsample" in summary["notes"]["LocalOutlierFactor"]
    table = (tmp_path / "rep" / "compare.md").read_text()
    assert table.count("\n") == 8 and "(uses labels)" in table
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Side by side" in html and (tmp_path / "rep" / "compare_pr.png").is_file()


def test_comparison_summary_is_mean_and_sample_std_over_seeds():
    from aedetect.training.compare import METRICS, Comparison, markdown_table

    runs = [{"m": {k: v for k in METRICS}} for v in (0.2, 0.4, 0.6)]
    cmp = Comparison("guide", [0, 1, 2], 50.0, notes={"m": "n"}, uses_labels={"m": False}, runs=runs)
    s = cmp.summary()["m"]["pr_auc"]
    assert s["mean"] == pytest.approx(0.4) and s["std"] == pytest.approx(0.2)
    assert "| m | 0.400 ± 0.200 |" in markdown_table(cmp)


@pytest.mark.parametrize("option, value, name", [("--set", "max_fpr=1.5", "max_fpr"),
                                                 ("--set", "alerts_per_day=0", "alerts_per_day"),
                                                 ("--set", "cost_review=-1", "cost_review"),
                                                 ("--threshold-rule", "top10", "threshold_rule")])
def test_cli_train_rejects_bad_rule_options_before_reading_data(tmp_path, option, value, name):
    from aedetect.cli.app import UsageError

    run = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "absent.csv"), "--out",
                                   str(tmp_path / "m"), option, value])
    assert isinstance(run.exception, UsageError)
    assert str(run.exception).startswith(f"{name}:")
    assert not (tmp_path / "m").exists()


def test_cli_compare_takes_any_labelled_table_with_its_entity_history(tmp_path):
    """A raw payment log, read as `train` reads it: every method sees the same history features
    on the rows the autoencoder trains and tests on (the warm-up's first days left out), split in
    time order (auto: the log has a time column); --use-labels adds the label-aware mode on the
    same autoencoder (its label-based risk columns included); a table without a label is a clear
    error."""
    from aedetect.data.generate import generate_payment_log

    log = generate_payment_log(n_days=30, n_cards=300, n_terminals=60, seed=2, fraud_rate=0.02)
    log.to_csv(tmp_path / "log.csv", index=False)
    args = ["compare", "--data", str(tmp_path / "log.csv"), "--entity-columns", "card_id,terminal_id",
            "--exclude-columns", "fraud_kind,transaction_id", "--epochs", "2", "--lof-max-train", "500"]
    run = CliRunner().invoke(app, [*args, "--use-labels", "--report", str(tmp_path / "rep")])
    assert run.exit_code == 0, run.output + str(run.exception)
    assert "entity: history" in " ".join(run.output.split())  # the schema, printed as train prints it
    got = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert got["protocol"] == "time" and len(got["summary"]) == 7
    # the label-aware row: labels used, its head described, the autoencoder's fit and the head's
    assert got["uses_labels"]["label-aware"] is True and got["uses_labels"]["autoencoder"] is False
    assert "gradient-boosted head on" in got["notes"]["label-aware"]
    assert "the history warm-up's" in got["notes"]["label-aware"]  # its head learns from those rows too
    summary = got["summary"]
    assert summary["label-aware"]["fit_seconds"]["mean"] > summary["autoencoder"]["fit_seconds"]["mean"]
    # with every label outside the test rows it finds far more than the autoencoder alone
    assert summary["label-aware"]["pr_auc"]["mean"] > summary["autoencoder"]["pr_auc"]["mean"] + 0.1
    assert "label-aware (uses labels)" in (tmp_path / "rep" / "compare.md").read_text()
    ae = got["autoencoder_first_seed"]
    # the test rows are the latest 20% of the rows after the warm-up (15 days of this 30-day log)
    t = pd.to_datetime(log["timestamp"])
    kept = int((t >= t.min() + pd.Timedelta(days=15)).sum())
    assert abs(ae["n_test"] - (kept - round(0.8 * kept))) <= 1
    for method in got["summary"].values():
        assert 0 <= method["pr_auc"]["mean"] <= 1
    # the supervised model on the history features finds the behavioural frauds
    assert got["summary"]["HistGradientBoosting (supervised)"]["pr_auc"]["mean"] > 0.3
    log.drop(columns="is_fraud").to_csv(tmp_path / "unlabelled.csv", index=False)
    res = CliRunner().invoke(app, ["compare", "--data", str(tmp_path / "unlabelled.csv"), "--epochs", "1"])
    assert res.exit_code != 0 and "needs a label column" in str(res.exception)
