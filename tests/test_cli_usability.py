"""The command line as a new user meets it (issue 24, item 10): -q after the command, evaluate
without --data, one --overwrite rule, dates in explanations (batch and service), help at 80 columns,
each option's own help, table titles, the service's request body. (The date in a reason and the
schema table's missing values are checked in test_reading.py and test_own_data.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from aedetect.cli.app import app
from aedetect.data.generate import generate_transaction_log
from aedetect.data.io import write_table

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def cli(*args, ok: bool = True) -> subprocess.CompletedProcess:
    """`python -m aedetect.cli ARGS` in a fresh process: errors go through the one-line handler."""
    proc = subprocess.run([sys.executable, "-m", "aedetect.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def is_group(command) -> bool:
    return hasattr(command, "commands")  # Typer's Click (it carries its own copy)


def commands(group=None, path: tuple = ()):
    """(path, click command) of every command and command group of `aedetect`."""
    group = group or typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if is_group(command):
            yield from commands(command, (*path, name))


ALL = list(commands())
IDS = [" ".join(p) for p, _ in ALL]


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A small model of a table of one's own (categories, a datetime, gaps), trained by `train`."""
    d = tmp_path_factory.mktemp("own")
    table = generate_transaction_log(1500, 0.05, seed=3)
    write_table(table, d / "tx.csv")
    cli("-q", "train", "--data", d / "tx.csv", "--out", d / "model", "--epochs", 2, "--hidden-units", "16,6,16")
    return d


# -- (a) -q after the command --------------------------------------------------------------------
@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_every_command_takes_quiet_after_its_name(path, command):
    if is_group(command) and path != ("review",):
        return  # a group that only lists its commands runs nothing to quieten (`review` runs the app)
    opts = {o for p in command.params for o in p.opts}
    assert {"-q", "--quiet"} <= opts, path


def test_quiet_after_the_command_silences_status_lines(tmp_path):
    loud = cli("data", "generate", "--rows", 50, "--out", tmp_path / "a.csv")
    assert "wrote 50 rows" in loud.stderr
    quiet = cli("data", "generate", "--rows", 50, "--out", tmp_path / "b.csv", "-q")
    assert quiet.stderr.strip() == "" and (tmp_path / "b.csv").stat().st_size > 0


# -- (b) evaluate without --data ---------------------------------------------------------------
def test_evaluate_without_data_asks_for_it_on_an_own_data_model(own):
    proc = cli("evaluate", "--model", own / "model", ok=False)
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "not the credit-card data: pass --data" in line and "tx.csv" in line
    assert "missing column" not in proc.stderr and "reading" not in proc.stderr


# -- (c) one --overwrite rule --------------------------------------------------------------------
def _refused(proc, path: Path) -> None:
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = one_line_error(proc)
    assert f"{path} already exists; pass --overwrite to replace it" in line


def test_file_outputs_are_refused_unless_overwrite(own, tmp_path):
    """Each command that writes a file refuses an existing one, naming it and --overwrite, and
    replaces it with --overwrite."""
    data, model = own / "tx.csv", own / "model"
    runs = {
        "data generate": ["data", "generate", "--rows", 50],
        "schema infer": ["schema", "infer", "--data", data],
        "score": ["score", "--model", model, "--data", data],
        "evaluate --out": ["evaluate", "--model", model, "--data", data],
        "monitor --out": ["monitor", "--model", model, "--data", data],
        "export --format onnx": ["export", "--model", model, "--format", "onnx"],
    }
    for i, (what, args) in enumerate(runs.items()):
        out = tmp_path / f"out{i}{'.json' if 'evaluate' in what or 'monitor' in what else ''}"
        out = out.with_suffix(".onnx") if "onnx" in what else out
        out = out.with_suffix(".csv") if what in ("data generate", "score") else out
        out = out.with_suffix(".yaml") if what == "schema infer" else out
        first = cli("-q", *args, "--out", out, ok=False)
        assert first.returncode in (0, 3, 4), (what, first.stderr[-2000:])  # monitor: 3/4 judge the data
        stamp = out.stat().st_mtime_ns
        _refused(cli(*args, "--out", out, ok=False), out)
        assert out.stat().st_mtime_ns == stamp, what
        again = cli("-q", *args, "--out", out, "--overwrite", ok=False)
        assert again.returncode in (0, 3, 4), (what, again.stderr[-2000:])


def test_folder_outputs_are_refused_unless_overwrite(own, tmp_path):
    """Reports, shard folders, the demo's folder, Spark's Parquet folder: an existing one is
    refused (before any data is read or a model loaded) unless --overwrite is given."""
    data, model = own / "tx.csv", own / "model"
    existing = tmp_path / "exists"
    existing.mkdir()
    runs = [
        ["evaluate", "--model", model, "--data", data, "--report", existing],
        ["monitor", "--model", model, "--data", data, "--report", existing],
        ["compare", "--data", data, "--report", existing],
        ["data", "to-tfrecord", "--data", data, "--out", existing],
        ["export", "--model", model, "--out", existing],
    ]
    for args in runs:
        _refused(cli(*args, ok=False), existing)
    (tmp_path / "model").mkdir()  # the demo writes OUT/model and OUT/metrics.json
    _refused(cli("demo", "--data", data, "--out", tmp_path, ok=False), tmp_path / "model")


def test_alerts_export_refuses_an_existing_file(tmp_path):
    pytest.importorskip("sqlalchemy")
    out = tmp_path / "labels.csv"
    out.write_text("kept\n")
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    _refused(cli("alerts", "export", "--db", db, "--out", out, ok=False), out)
    assert out.read_text() == "kept\n"
    cli("-q", "alerts", "export", "--db", db, "--out", out, "--overwrite")
    assert out.read_text().startswith("transaction_id,label")


def test_overwrite_never_replaces_an_input(own):
    proc = cli("score", "--model", own / "model", "--data", own / "tx.csv", "--out", own / "tx.csv",
               "--overwrite", ok=False)
    assert proc.returncode == 1
    assert "is the input file" in one_line_error(proc)


# -- (d) dates in explanations ---------------------------------------------------------------------
def test_batch_and_service_give_the_same_reasons(own, tmp_path):
    from fastapi.testclient import TestClient

    from aedetect.serving.app import create_app

    rows = pd.read_csv(own / "tx.csv").head(40)
    write_table(rows, tmp_path / "rows.csv")
    cli("-q", "score", "--model", own / "model", "--data", tmp_path / "rows.csv", "--out", tmp_path / "s.csv",
        "--top-k", 20)
    batch = pd.read_csv(tmp_path / "s.csv")
    tx = [{**{k: (None if pd.isna(v) else v) for k, v in r.items()}, "id": r["transaction_id"]}
          for r in rows.to_dict("records")]
    res = TestClient(create_app(own / "model", None)).post("/v1/score", json={"transactions": tx})
    assert res.status_code == 200, res.text
    k = len(res.json()["results"][0]["top_features"])
    service = [[f["reason"] for f in r["top_features"]] for r in res.json()["results"]]
    assert service == batch[[f"top{i}_reason" for i in range(1, k + 1)]].fillna("").values.tolist()
    dates = [r for row in service for r in row if r.startswith("timestamp=")]
    assert dates and all(re.fullmatch(r"timestamp=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r) for r in dates)


# -- (e) help at 80 columns ----------------------------------------------------------------------
@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=IDS)
def test_help_is_readable_at_80_columns(path):
    """No line over 80 columns, nothing cut with an ellipsis, every option's name whole at the
    start of its line, no markup escapes left."""
    command = dict(ALL)[path]
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(map(len, lines)) <= 80, max(lines, key=len)
    assert "…" not in res.output and "\\[" not in res.output
    ctx = command.context_class(command, info_name=path[-1])
    for param in command.params:
        record = param.get_help_record(ctx)
        if record is None:
            continue
        assert any(line.lstrip().startswith(record[0]) for line in lines), (path, record[0])


def test_the_command_list_shows_each_first_line_whole():
    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}, terminal_width=80)
    text = " ".join(res.output.split())
    assert "Evaluate a model on labelled data: metrics table and metrics.json." in text
    assert "(needs the review extra)." in text
    listed = res.output.split("Commands:")[1]
    assert "..." not in listed  # Click cuts a long first line with "..."


# -- (f) each option's own help --------------------------------------------------------------------
def _help_of(path: tuple, option: str) -> str:
    command = dict(ALL)[path]
    param = next(p for p in command.params if option in p.opts)
    return param.help or ""


def test_shared_options_say_what_they_do_in_each_command():
    assert "generator" in _help_of(("data", "generate"), "--seed")
    assert "split" not in _help_of(("data", "generate"), "--seed")
    assert _help_of(("data", "to-tfrecord"), "--seed") == "seed for the split"
    assert "shards" not in _help_of(("evaluate",), "--data")
    assert "labelled table" in _help_of(("evaluate",), "--data")
    for path in (("compare",), ("demo",), ("data", "to-tfrecord")):
        assert "shards" not in _help_of(path, "--data") and "Class" in _help_of(path, "--data")
    assert "shards" in _help_of(("train",), "--data")


# -- (g) the table's title -------------------------------------------------------------------------
def test_an_own_data_table_is_titled_by_its_split():
    from aedetect.cli.ui import metrics_table

    metrics = json.loads((ROOT / "docs" / "demo-metrics.json").read_text())
    assert metrics_table(metrics).title == "test set (guide protocol, seed 0)"  # the README's table
    assert metrics_table(metrics, guide_column=False).title == \
        "test set: a random split stratified by the label, seed 0"
    assert metrics_table({**metrics, "protocol": "time"}, guide_column=False).title == \
        "test set: the latest 20% of rows by time, seed 0"


def test_evaluate_titles_an_own_data_model_by_its_split(own):
    proc = cli("evaluate", "--model", own / "model", "--data", own / "tx.csv")
    assert "test set: the latest 20% of rows by time, seed 0" in proc.stdout
    assert "protocol" not in proc.stdout


# -- (i) the service's request body ------------------------------------------------------------------
def test_serve_help_shows_a_request_body():
    res = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert '-d \'{"transactions": [{"id": "tx-1", "Time": 406, "V1": -2.31, ...,' in res.output
    assert '"results": [{"id": "tx-1", "score":' in res.output


def test_the_docs_own_data_body_scores(own):
    """The own-data body in docs/serving.md is accepted by a model of the generated table."""
    from fastapi.testclient import TestClient

    from aedetect.serving.app import create_app

    docs = (ROOT / "docs" / "serving.md").read_text()
    body = re.search(r"-d '(\{\"transactions\": \[\{\"id\": \"tx-1\",\s+\"timestamp\".*?\})'", docs, re.S).group(1)
    res = TestClient(create_app(own / "model", None)).post("/v1/score", json=json.loads(body))
    assert res.status_code == 200, res.text
    reasons = [f["reason"] for f in res.json()["results"][0]["top_features"]]
    assert reasons
