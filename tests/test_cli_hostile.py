"""User mistakes and hostile files through the CLI: one clear line, never a traceback, nothing lost.

Most tests call the CLI in-process (TensorFlow is loaded once); the signal tests need a process.
Exit 1: a problem with the data, files or model folder (2 is kept for usage errors).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.io import read_table, write_table

FEATURES = list(CREDITCARD.features)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture
def cli(monkeypatch, capsys):
    from aedetect.cli.app import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["aedetect", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return code, " ".join(err.split())  # one logical line, whatever the terminal width

    return run


@pytest.fixture
def csv(frame, tmp_path):
    return write_table(frame.head(30), tmp_path / "in.csv")


def _with_cell(frame, tmp_path, col, value, name="cell.csv"):
    df = frame.head(10).astype({col: object})
    df.loc[2, col] = value
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_markup_in_a_cell_is_shown_as_written(cli, model_dir, frame, tmp_path):
    src = _with_cell(frame, tmp_path, "V1", "[/x]")
    code, err = cli("score", "--model", model_dir, "--data", src, "--out", tmp_path / "o.csv")
    assert code == 1 and "row 3: column 'V1': value '[/x]' is not a number" in err


def test_markup_in_a_path_is_shown_as_written(cli, model_dir, tmp_path):
    code, err = cli("score", "--model", model_dir, "--data", tmp_path / "no[/x]pe.csv",
                    "--out", tmp_path / "o.csv")
    assert code == 1 and "no[/x]pe.csv: no such file" in err


def test_duplicate_column_names_are_named(cli, model_dir, frame, tmp_path):
    text = frame.head(5).to_csv(index=False).replace("V2,", "V1,", 1)
    (tmp_path / "dup.csv").write_text(text)
    code, err = cli("score", "--model", model_dir, "--data", tmp_path / "dup.csv", "--out", tmp_path / "o.csv")
    assert code == 1 and "column name 'V1' appears more than once (columns 2 and 3)" in err
    with pytest.raises(Exception, match="appears more than once"):
        read_table(tmp_path / "dup.csv")


def test_out_under_a_file_is_refused_before_work(cli, model_dir, csv, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, err = cli("score", "--model", model_dir, "--data", csv, "--out", tmp_path / "afile" / "o.csv")
    assert code == 1 and "afile is a file, not a folder" in err
    start = time.perf_counter()
    code, err = cli("train", "--data", csv, "--out", tmp_path / "afile" / "model")
    assert code == 1 and "cannot write model folder" in err and "trained" not in err
    assert time.perf_counter() - start < 5  # refused before reading data or training


@pytest.mark.parametrize("how", ["same", "relative", "symlink"])
def test_scoring_onto_the_input_is_refused(cli, model_dir, csv, tmp_path, monkeypatch, how):
    before = csv.read_bytes()
    monkeypatch.chdir(tmp_path)
    out = {"same": csv, "relative": "./sub/../in.csv", "symlink": tmp_path / "link.csv"}[how]
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        os.symlink(csv, out)
    code, err = cli("score", "--model", model_dir, "--data", csv, "--out", out)
    assert code == 1 and "is the input file" in err
    assert csv.read_bytes() == before


def test_a_folder_is_not_reported_as_missing(cli, model_dir, tmp_path):
    (tmp_path / "d.csv").mkdir()
    code, err = cli("score", "--model", model_dir, "--data", tmp_path / "d.csv", "--out", tmp_path / "o.csv")
    assert code == 1 and "d.csv: is a folder, not a data file" in err
    with pytest.raises(Exception, match="is a folder"):
        read_table(tmp_path / "d.csv")


def test_malformed_manifest_gives_one_line(cli, model_dir, csv, tmp_path):
    folder = shutil.copytree(model_dir, tmp_path / "m")
    m = json.loads((folder / "manifest.json").read_text())
    m["threshold"]["value"] = "abc"
    (folder / "manifest.json").write_text(json.dumps(m))
    code, err = cli("score", "--model", folder, "--data", csv, "--out", tmp_path / "o.csv")
    assert code == 1 and "threshold.value" in err and "Input should be a valid number" in err


def test_nan_text_is_reported_as_nan_not_empty(frame, tmp_path):
    with pytest.raises(Exception, match=r"row 3: value 'NaN' is not a number"):
        read_table(_with_cell(frame, tmp_path, "V4", "NaN"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = frame.head(10).copy()
    df.loc[2, "V4"] = np.nan  # a float NaN in Parquet, not a null
    pq.write_table(pa.table({c: pa.array(df[c].to_numpy()) for c in df.columns}), tmp_path / "nan.parquet")
    with pytest.raises(Exception, match=r"row 3: value 'nan' is not a number"):
        read_table(tmp_path / "nan.parquet")


def test_infinite_value_reads_inf_not_numpy_repr(detector, frame, tmp_path):
    from aedetect.serving.batch import score_file

    df = frame.head(10).copy()
    df.loc[4, "V5"] = np.inf
    src = write_table(df, tmp_path / "inf.parquet")
    with pytest.raises(Exception, match=r"row 5: column 'V5': value inf is not finite") as info:
        score_file(detector, src, tmp_path / "o.csv")
    assert "np.float64" not in str(info.value)


def test_parse_error_names_the_row(frame, tmp_path):
    lines = frame.head(10).to_csv(index=False).splitlines()
    lines[6] = ",".join(lines[6].split(",")[:-2])  # data row 6 is short
    (tmp_path / "short.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match=r"short\.csv: row 6: expected 31 fields, found 29"):
        read_table(tmp_path / "short.csv")


def test_raw_bytes_are_not_echoed(cli, model_dir, frame, tmp_path):
    src = _with_cell(frame, tmp_path, "V1", "\x1b[2J\x07" + "z" * 500)
    code, err = cli("score", "--model", model_dir, "--data", src, "--out", tmp_path / "o.csv")
    assert code == 1 and "\x1b" not in err and "\x07" not in err and "z" * 60 not in err
    assert "\\x1b[2J\\x07zzz" in err


def test_stale_part_files_of_a_killed_run_are_removed(cli, model_dir, csv, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".o.csv.{dead.pid}.abc123.part"
    stale.write_text("half")
    live = tmp_path / f".o.csv.{os.getppid()}.abc123.part"  # a run still going: kept
    live.write_text("half")
    code, err = cli("score", "--model", model_dir, "--data", csv, "--out", tmp_path / "o.csv")
    assert code == 0 and not stale.exists() and live.exists()
    assert f"removed {stale}" in err


def test_outputs_and_model_folders_follow_the_umask(fitted, detector, csv, tmp_path):
    from aedetect.serving.batch import score_file

    old = os.umask(0o022)
    try:
        out = score_file(detector, csv, tmp_path / "o.parquet").output
        table = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        model = fitted.save(tmp_path / "model")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert stat.S_IMODE(table.stat().st_mode) == 0o644
    assert stat.S_IMODE(model.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in model.iterdir())


def _catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(mask >> (sig - 1) & 1)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_ctrl_c_while_starting_prints_no_traceback(tmp_path):
    # From the moment the console script's own code runs (it catches SIGTERM first thing):
    # at once (while the CLI imports) and a little later (while TensorFlow may load).
    for delay in (0.0, 0.3):
        proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "aedetect"), "score",
                                 "--model", tmp_path, "--data", "x.csv", "--out", "o.csv"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.monotonic() + 60
        while proc.poll() is None and not _catches(proc.pid, signal.SIGTERM):
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert proc.returncode in (130, 1), err  # interrupted and said so, or done before


@pytest.mark.slow
def test_sigterm_during_training_cleans_up(tmp_path):
    data = tmp_path / "gen.csv"
    write_table(__import__("aedetect.data.generate", fromlist=["x"]).generate_transactions(4000, 0.02, seed=1),
                data)
    work = tmp_path / "tmp"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "aedetect.cli", "train", "--data", data, "--out",
                             tmp_path / "model", "--epochs", "200", "--set", "patience=200",
                             "--input-pipeline", "tfrecord"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "TMPDIR": str(work)})
    deadline = time.monotonic() + 120
    while not any(work.glob("aedetect-shards-*/*.tfrecord")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # inside model.fit
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; no model was written" in err and "Traceback" not in err
    assert list(work.iterdir()) == [] and not (tmp_path / "model").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- issue 25, items 13-16: resource limits and one-line errors for settings, schemas, labels --
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
             "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"


def test_yaml_alias_bomb_is_refused_quickly(cli, csv, tmp_path):
    from aedetect.data.schema import DatasetSchema
    from aedetect.errors import AedetectError

    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    start = time.perf_counter()
    code, err = cli("train", "--data", csv, "--out", tmp_path / "m", "--config", tmp_path / "bomb.yaml")
    assert code == 2 and "bomb.yaml: line 2: YAML aliases (*a) are not accepted in a config file" in err
    with pytest.raises(AedetectError, match=r"bomb\.yaml: line 2: YAML aliases \(\*a\) are not accepted"):
        DatasetSchema.from_file(tmp_path / "bomb.yaml")
    assert time.perf_counter() - start < 5 and not (tmp_path / "m").exists()


def test_settings_files_are_limited_in_size_and_depth(tmp_path):
    from aedetect.errors import AedetectError
    from aedetect.files import MAX_SETTINGS_BYTES, read_yaml_or_json

    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AedetectError, match=r"deep\.json: nested more than 64 levels deep"):
        read_yaml_or_json(tmp_path / "deep.json", "config file")
    (tmp_path / "big.json").write_text(" " * (MAX_SETTINGS_BYTES + 1) + "{}")
    with pytest.raises(AedetectError, match=r"big\.json: 8,388,61\d bytes is too large for a config file"):
        read_yaml_or_json(tmp_path / "big.json", "config file")


@pytest.mark.parametrize("setting, rule, expected", [
    ("threshold_value=NaN", "fixed", "threshold_value: Input should be a finite number"),
    ("threshold_value=Infinity", "fixed", "threshold_value: Input should be a finite number"),
    ("alerts_per_day=Infinity", "alert_budget", "alerts_per_day: Input should be a finite number"),
    ("seed=99999999999999999999", "normal_percentile", "seed: Input should be less than or equal to 4294967295"),
])
def test_non_finite_or_huge_settings_are_one_line_errors(cli, csv, tmp_path, setting, rule, expected):
    code, err = cli("train", "--data", csv, "--out", tmp_path / "m", "--threshold-rule", rule,
                    "--set", setting)
    assert code == 2 and expected in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("period", ["0.0", ".nan", "-60", ".inf"])
def test_schema_periods_must_be_finite_and_positive(cli, frame, tmp_path, period):
    data = write_table(frame.head(300), tmp_path / "d.csv")
    schema = tmp_path / "s.yaml"
    assert cli("schema", "infer", "--data", data, "--out", schema)[0] == 0
    text = schema.read_text()
    assert "- 86400.0" in text
    schema.write_text(text.replace("- 86400.0", f"- {period}", 1))
    code, err = cli("train", "--data", data, "--schema", schema, "--out", tmp_path / "m", "--epochs", "1")
    assert code == 1 and "s.yaml: columns.0: " in err
    assert "column 'Time': periods must be finite numbers of seconds > 0" in err


def test_use_labels_without_a_0_1_label_column_is_named(cli, frame, tmp_path):
    df = frame.head(300).copy()
    df["Class"] = df["Class"] * 2  # 0/2: not a label, so the schema has none
    data = write_table(df, tmp_path / "d.csv")
    code, err = cli("train", "--data", data, "--out", tmp_path / "m", "--epochs", "1", "--use-labels")
    assert code == 1 and "d.csv: use_labels (--use-labels) needs labels, and the schema has no label column" in err
    assert not (tmp_path / "m").exists()


def test_deeply_nested_reference_is_a_damaged_file(cli, model_dir, csv, tmp_path):
    from aedetect.errors import ArtifactError
    from aedetect.files import sha256_file
    from aedetect.serving.app import create_app

    folder = shutil.copytree(model_dir, tmp_path / "m")
    (folder / "reference.json").write_text('{"columns": ' + "[" * 100_000 + "]" * 100_000 + "}")
    m = json.loads((folder / "manifest.json").read_text())
    m["files"]["reference.json"] = sha256_file(folder / "reference.json")
    (folder / "manifest.json").write_text(json.dumps(m))
    code, err = cli("monitor", "--model", folder, "--data", csv)
    assert code == 1
    assert "reference.json: JSON nested too deeply (more than 64 levels); the reference profile is damaged" in err
    with pytest.raises(ArtifactError, match=r"reference\.json: JSON nested too deeply"):
        create_app(folder)


def test_training_on_too_few_rows_says_how_many(cli, frame, tmp_path):
    data = write_table(frame.head(20), tmp_path / "d.csv")
    code, err = cli("train", "--data", data, "--out", tmp_path / "m", "--epochs", "1")
    assert code == 1 and "d.csv: 20 rows (" in err
    assert "training needs at least 50 normal rows to train on and 10 to validate with" in err
    assert not (tmp_path / "m").exists()


def test_a_cell_over_a_block_reads_everywhere(cli, frame, tmp_path):
    df = frame.head(300).copy()
    df["memo"] = "x"
    df.loc[5, "memo"] = "y" * 3_000_000  # longer than pyarrow's 1 MB parsing block
    df.to_csv(tmp_path / "long.csv", index=False)
    from aedetect.data.io import read_raw

    raw = read_raw(tmp_path / "long.csv")
    assert len(raw) == 300 and len(raw.loc[5, "memo"]) == 3_000_000
    code, err = cli("schema", "infer", "--data", tmp_path / "long.csv")
    assert code == 0 and "straddl" not in err


def test_training_without_anomalies(cli, frame, tmp_path):
    data = write_table(frame[frame["Class"] == 0].head(600), tmp_path / "normals.csv")
    code, err = cli("train", "--data", data, "--out", tmp_path / "m", "--epochs", "1",
                    "--threshold-rule", "best_f1")
    assert code == 1 and "normals.csv: 600 rows (600 labelled normal, 0 anomalies in column 'Class'); " \
        "the best_f1 threshold rule chooses on the selection set" in err
    assert not (tmp_path / "m").exists()
    # A label-free rule needs no anomaly: it trains (the selection set is empty, not an error).
    code, err = cli("train", "--data", data, "--out", tmp_path / "m", "--epochs", "1",
                    "--hidden-units", "8,4,8")
    assert code == 0 and (tmp_path / "m" / "manifest.json").is_file(), err
