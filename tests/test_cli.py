"""End to end through the installed `aedetect` command, on generated data."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from aedetect.data.generate import generate_transactions

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(*args, ok=True):
    proc = subprocess.run([sys.executable, "-m", "aedetect.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def trained(workdir):
    data = workdir / "gen.csv"
    run("data", "generate", "--rows", 6000, "--fraud-rate", 0.02, "--out", data)
    model = workdir / "model"
    run("train", "--data", data, "--out", model, "--epochs", 5, "--set", "batch_size=128",
        "--threshold-rule", "best_f1", "--protocol", "guide")  # the guide's split sizes are checked
    return data, model


def test_train_evaluate_score(trained, workdir):
    data, model = trained
    metrics_path = workdir / "metrics.json"
    proc = run("evaluate", "--model", model, "--data", data, "--out", metrics_path)
    assert "ROC-AUC" in proc.stdout and "guide (published)" in proc.stdout
    m = json.loads(metrics_path.read_text())
    required = {"roc_auc", "pr_auc", "precision", "recall", "f1", "threshold", "threshold_rule",
                "recall_at_precision_0_93", "precision_at_recall_0_433", "mean_mse_normal",
                "mean_mse_fraud", "n_test", "n_test_fraud", "seed", "protocol"}
    assert required <= set(m)
    assert m["threshold_rule"] == "best_f1" and m["protocol"] == "guide"
    assert m["roc_auc"] > 0.9  # quality floor on generated data
    assert m["n_test_fraud"] == round(120 * 480 / 492)

    scored = workdir / "scored.parquet"
    run("score", "--model", model, "--data", data, "--out", scored)
    out = pd.read_parquet(scored)
    src = pd.read_csv(data)
    assert len(out) == len(src) and {"score", "flag"} <= set(out.columns)
    manifest = json.loads((model / "manifest.json").read_text())
    assert ((out["score"] > manifest["threshold"]["value"]) == out["flag"].astype(bool)).all()


def test_evaluate_other_file_needs_rows_all(trained, workdir):
    _, model = trained
    other = workdir / "other.csv"
    run("data", "generate", "--rows", 2000, "--fraud-rate", 0.05, "--seed", 9, "--out", other)
    proc = run("evaluate", "--model", model, "--data", other, ok=False)
    assert proc.returncode == 1 and "--rows all" in proc.stderr
    proc = run("evaluate", "--model", model, "--data", other, "--rows", "all")
    assert "2,000 / 100" in proc.stdout


@pytest.mark.parametrize("args, message, status", [
    (["train", "--data", "missing.csv", "--out", "m"], "missing.csv: no such file", 1),
    (["train", "--data", "{bad}", "--out", "m"], "column 'V2', row 3: value 'x' is not a number", 1),
    (["train", "--data", "{gen}", "--out", "m", "--hidden-units", "20,a"], "--hidden-units must be", 2),
    (["train", "--data", "{gen}", "--out", "m", "--protocol", "random"], "protocol: Input should be", 2),
    (["train", "--data", "{gen}", "--out", "m", "--set", "epochs=0"],
     "The 'epochs' parameter of AutoencoderDetector must be an int in the range [1, inf) or a str "
     "among {'auto'}. Got 0", 2),
    (["train", "--data", "{gen}", "--out", "m", "--set", "depth=3"], "unknown setting(s) ['depth']", 2),
    (["train", "--data", "{gen}", "--out", "m", "--set", "epochs"], "--set takes key=value", 2),
    (["evaluate", "--model", "{gen}", "--data", "{gen}"], "no such model folder", 1),
    (["evaluate", "--model", "{gen}", "--data", "{gen}", "--rows", "some"], "--rows must be 'test' or 'all'", 2),
])
def test_user_mistakes_give_one_clear_line(trained, workdir, args, message, status):
    data, _ = trained
    bad = workdir / "bad.csv"
    df = pd.read_csv(data).head(10).astype({"V2": object})
    df.loc[2, "V2"] = "x"
    df.to_csv(bad, index=False)
    args = [a.format(bad=bad, gen=data) for a in args]
    proc = subprocess.run([sys.executable, "-m", "aedetect.cli", *args], capture_output=True,
                          text=True, env=ENV, cwd=workdir, timeout=300)
    assert proc.returncode == status, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workdir / "m").exists()  # nothing written on failure


def test_data_commands(workdir):
    shards = workdir / "shards"
    data = workdir / "small.parquet"
    run("data", "generate", "--rows", 3000, "--out", data)
    run("data", "to-tfrecord", "--data", data, "--out", shards)
    names = {p.name.split("-")[0] for p in shards.glob("*.tfrecord")}
    assert names == {"train", "validation", "selection", "test"}
    meta = json.loads((shards / "meta.json").read_text())
    assert sum(meta["sizes"].values()) == 3000


def test_demo_falls_back_to_generated_data_when_offline(tmp_path):
    env = {**ENV, "AEDETECT_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "aedetect.cli", "demo", "--out", str(tmp_path / "demo"), "--epochs", "2",
         "--offline-rows", "4000"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "using 4,000 rows of generated data" in proc.stderr
    assert "NOT the ULB results" in proc.stderr
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert m["n_test"] > 0 and (tmp_path / "demo" / "model" / "manifest.json").is_file()


def test_settings_from_a_config_file_and_set(trained, workdir):
    data, _ = trained
    cfg = workdir / "run.json"
    cfg.write_text(json.dumps({"protocol": "time", "detector": {"hidden_units": [8, 3, 8], "epochs": 2},
                               "alerts_per_day": 20}))
    model = workdir / "from-config"
    run("train", "--data", data, "--out", model, "--config", cfg, "--set", "epochs=3",
        "--threshold-rule", "alert_budget")
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["detector_params"]["hidden_units"] == [8, 3, 8]
    assert manifest["detector_params"]["epochs"] == 3  # --set wins over the file
    assert manifest["threshold"]["rule"] == "alert_budget"
    assert manifest["threshold"]["params"]["alerts_per_day"] == 20
    assert manifest["training"]["split"]["protocol"] == "time"


def test_version_json_and_quiet(trained, workdir):
    from aedetect import __version__

    assert run("--version").stdout.strip() == f"aedetect {__version__}"
    data, model = trained
    proc = run("-q", "evaluate", "--model", model, "--data", data, "--json")
    m = json.loads(proc.stdout)
    assert m["threshold_rule"] == "best_f1" and m["intervals"]["method"] == "clopper-pearson"
    assert proc.stderr == ""


def test_tables_are_not_cut_when_piped():
    """Rich cuts tables to 80 columns when stdout is not a terminal; the CLI asks for full width."""
    code = ("import aedetect.cli.app as c, rich.table as t; tab = t.Table('metric', 'value');"
            "tab.add_row('x' * 150, '1'); c.out.print(tab)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert "x" * 150 in proc.stdout


@pytest.mark.slow  # a second TensorFlow start in a subprocess; the library path is in test_monitor.py
def test_monitor_alarms_on_the_shifted_day_and_exits_3(trained, workdir):
    _, model = trained
    assert "reference.json" in json.loads((model / "manifest.json").read_text())["files"]
    new = workdir / "new.csv"
    df = generate_transactions(3000, 0.02, seed=21)
    late = df["Time"] >= 86_400
    df.loc[late, "V3"] += 2 * df["V3"].std()
    df.to_csv(new, index=False)
    proc = run("monitor", "--model", model, "--data", new, "--window", "1d", "--report",
               workdir / "drift", ok=False)
    assert proc.returncode == 3, proc.stderr
    assert "ALARM" in proc.stdout and "24h-48h: columns that moved most: V3" in proc.stderr
    drift = json.loads((workdir / "drift" / "drift.json").read_text())
    first, second = drift["windows"]
    assert not first["alarm"] and second["alarm"] and second["drifted_columns"][0] == "V3"
    assert second["labels"]["tp"] + second["labels"]["fn"] == int(df.loc[late, "Class"].sum())
    html = (workdir / "drift" / "report.html").read_text()
    assert html.count("<img") == 4 and "Benjamini-Hochberg" in html  # flagged share, PSI, 2 windows


def test_monitor_needs_a_reference(model_dir, workdir):
    """A model folder saved without a reference (as by AutoencoderDetector.save)."""
    new = workdir / "new-noref.csv"
    generate_transactions(500, 0.02, seed=22).to_csv(new, index=False)
    proc = run("monitor", "--model", model_dir, "--data", new, ok=False)
    assert proc.returncode == 2 and "has no reference.json" in proc.stderr
    assert "pass --reference DATA" in proc.stderr and "Traceback" not in proc.stderr
