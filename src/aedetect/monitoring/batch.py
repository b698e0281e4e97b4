"""Batch monitoring of a data file against a model's reference: cut it into time windows,
compare each (see `aedetect.monitoring.reference`), and present the result as a table, `drift.json`, an
HTML report with figures per window, and a retraining hint.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aedetect.data.arrow import frame_table, parse_rows
from aedetect.data.schema import as_seconds
from aedetect.errors import DataError
from aedetect.monitoring.reference import (
    DriftSettings,
    Reference,
    compare_batch,
    input_names,
    numeric_counts,
    read_as_model,
    young_columns,
)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_ROWS = 100  # a window with fewer scored rows is reported but never alarms (`--min-rows`)


def parse_window(text: str) -> float:
    """'4h' -> 14400.0 seconds; units s, m, h, d."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise DataError(f"--window must be a positive length like 30m, 4h or 1d; got {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def read_rows(det, df: pd.DataFrame, source: str, history_state=None) -> tuple[pd.DataFrame, np.ndarray]:
    """The model's input columns of `df` as `aedetect score` reads them (`parse_rows`: numbers
    parsed, dates as seconds, a missing value good where the model imputes it), and per row the
    reason it cannot be scored (None = good row), the batch scorer's reasons word for word.
    A model with entity history computes it after `history_state` (default: the model's own)."""
    names = input_names(det)
    table = getattr(det, "schema", None) is not None
    schema = det.dataset_schema if table else None
    history = schema is not None and schema.history is not None
    if history:  # the history columns are computed from the time, entities and amount (and labels)
        from aedetect.data.history import input_columns

        derived = set(schema.computed_features)
        names = [c for c in names if c not in derived]
        names += [c for c in input_columns(schema) if c not in names]
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing} that the model takes as input")
    x, reasons = parse_rows(frame_table(df, names), names, getattr(det, "preprocessor_", None),
                            table=table)
    if history:  # computed after the model's state, as `aedetect score` computes a file's
        from aedetect.data.history import add_history, attach_history

        state = history_state if history_state is not None else getattr(det, "history_state_", None)
        x, reasons = attach_history(x, reasons, add_history(df, schema, state)[0], schema)
    if table:  # categories as the model reads them (the reference profiled them so)
        risk = [c for c in getattr(schema, "label_features", []) if c in x]  # a label-aware model's
        x = read_as_model(det, x).assign(**{c: x[c] for c in risk})
    return (x if table else pd.DataFrame(x, columns=names)), reasons


def row_times(df: pd.DataFrame, x: pd.DataFrame, column: str | None, source: str) -> np.ndarray:
    """The time column as seconds (the schema's parser, `as_seconds`); NaN where a row has none.
    A column the model reads comes parsed with the other inputs (a bad value is then that row's
    scoring reason)."""
    if not column or column not in df.columns:
        raise DataError(f"{source}: --window needs a time column; {column!r} is not in the file")
    if column in x.columns and pd.api.types.is_numeric_dtype(x[column]):
        return x[column].to_numpy(dtype="float64", na_value=np.nan)
    return as_seconds(df[column].reset_index(drop=True), column, source)


def window_name(start: float, end: float, dates: bool) -> str:
    if dates:
        a, b = pd.Timestamp(start, unit="s"), pd.Timestamp(end, unit="s")
        return f"{a:%Y-%m-%d %H:%M}-{b:%H:%M}"
    return f"{start / 3600:g}h-{end / 3600:g}h"


@dataclass
class MonitorResult:
    summary: dict  # what drift.json holds
    window_scores: list[np.ndarray]  # the anomaly scores of each window's rows, for the figures

    @property
    def alarm(self) -> bool:
        return self.summary["alarm"]

    @property
    def not_judged(self) -> int:
        """Windows with more than half their rows unscored: the data could not be judged there."""
        return self.summary["windows_not_judged"]


def _silence(res: dict) -> None:
    """A window that is not judged, or too small, never alarms; its statistics stay shown."""
    for t in [*res["columns"].values(), res["score"], res["flagged"],
              (res.get("labels") or {}).get("anomaly_share") or {}]:
        if "alarm" in t:
            t["alarm"] = False
    res["drifted_columns"], res["alarm"] = [], False


def monitor_frame(det, ref: Reference, df: pd.DataFrame, *, window: float | None = None,
                  time_column: str | None = None, label_column: str | None = None,
                  settings: DriftSettings | None = None, source: str = "data",
                  min_rows: int = MIN_ROWS, labels: pd.DataFrame | None = None,
                  id_column: str | None = None, history_state=None,
                  history_source: str = "the model's training data") -> MonitorResult:
    """Score `df` with `det` as `aedetect score` does, cut it into windows of `window` seconds
    of `time_column` (aligned to multiples of the window: 4h windows of the ULB `Time` start at
    0, 14400, ...), or treat it as one batch, and compare each window with `ref`.

    A row that cannot be scored (the batch scorer's reasons; with windows, also no time value)
    is counted, not compared; a window where more than half the rows are unscored is not judged,
    and one with fewer than `min_rows` scored rows is reported but never alarms. A file with no
    data rows, or none that can be scored, is an error.

    `labels`: verdicts of reviewed alerts (transaction_id, label: `aedetect.data.labels`), found
    by `id_column` (default: transaction_id, else the model's id column); each window's
    "verdicts" (`verdict_precision`) then gives the precision of its flagged rows that were
    reviewed.

    A model with entity history computes the file's after `history_state` (`history_source`
    names it), by default the model's own; a file that starts days after it is warned about in
    the hints (`aedetect.data.history.gap_warning`)."""
    settings = settings or DriftSettings()
    if len(df) == 0:
        raise DataError(f"{source}: the file has no data rows")
    x, reasons = read_rows(det, df, source, history_state)
    gap = _history_gap(det, df, history_state, source, history_source)
    missing = [c for c in ref.columns if c not in x.columns]
    if missing:
        raise DataError(f"{source}: the reference has column(s) {missing} that the model does not take")
    y = None
    if label_column and label_column in df.columns:
        y = pd.to_numeric(df[label_column], errors="coerce").to_numpy()
        if not np.isin(y, [0, 1]).all():
            i = int(np.flatnonzero(~np.isin(y, [0, 1]))[0])
            raise DataError(f"{source}: column {label_column!r}, row {i + 1}: label must be 0 or 1")
    verdicts = None
    if labels is not None:
        from aedetect.data.labels import check_labels, labels_id_column, row_verdicts

        id_column = labels_id_column(df, getattr(det, "dataset_schema", None), id_column, source=source,
                                     option="--id-column")
        verdicts = row_verdicts(df, id_column, check_labels(labels, "the labels"))
    skip: tuple[str, ...] = ()
    if window is not None:
        t = row_times(df, x, time_column, source)
        dates = not pd.api.types.is_numeric_dtype(df[time_column])
        placed = np.isfinite(t)
        reasons[~placed & (reasons == None)] = (  # noqa: E711 (element-wise on objects)
            f"column {time_column!r}: no time value, so in no window")
        ids = np.floor(np.where(placed, t, 0.0) / window).astype("int64")
        skip = (time_column,)  # a window differs from the reference in time by construction
    else:
        ids, dates, placed = np.zeros(len(df), "int64"), False, np.ones(len(df), bool)
    good = reasons == None  # noqa: E711
    unscored = {"rows": int((~good).sum()), "first": [
        {"row": int(i) + 1, "reason": reasons[i]} for i in np.flatnonzero(~good)[:5]]}
    if not good.any():
        first = unscored["first"][0]
        raise DataError(f"{source}: none of the {len(df):,} rows can be scored; row {first['row']}: "
                        f"{first['reason']}")
    scores = np.full(len(df), np.nan)
    x_good = x[good].reset_index(drop=True)
    scores[good] = det.score_matrix(x_good if getattr(det, "schema", None) is not None
                                    else x_good.to_numpy(dtype="float64"))[0]
    windows, window_scores = [], []
    for w in np.unique(ids[placed]):
        rows = placed & (ids == w)
        ok = rows & good
        res = compare_batch(ref, x[rows], scores[ok], None if y is None else y[ok], settings, skip=skip)
        res["scored_rows"], res["unscored_rows"] = int(ok.sum()), int((rows & ~good).sum())
        res["status"] = ("not judged" if 2 * res["unscored_rows"] > res["rows"] else "too few rows"
                         if res["scored_rows"] < min_rows else "alarm" if res["alarm"] else "ok")
        if res["status"] in ("not judged", "too few rows"):
            _silence(res)
        if verdicts is not None:
            res["verdicts"] = verdict_precision(verdicts[ok], scores[ok] > ref.threshold)
        res["window"] = (window_name(w * window, (w + 1) * window, dates) if window else "all rows")
        res["start"] = float(w * window) if window else None
        windows.append(res)
        window_scores.append(scores[ok])
    return MonitorResult({"source": source, "window_seconds": window, "time_column": time_column if window else None,
            "settings": settings.model_dump(), "correction": "benjamini-hochberg", "min_rows": min_rows,
            "verdicts_by": id_column if verdicts is not None else None,
            "reference": reference_summary(ref), "rows": len(df), "scored_rows": int(good.sum()),
            "unscored": unscored, "windows": windows, "alarm": any(w["alarm"] for w in windows),
            "windows_not_judged": sum(w["status"] == "not judged" for w in windows),
            "hint": ([gap] if gap else []) + young_hint(ref) + retraining_hint(windows)}, window_scores)


def _history_gap(det, df: pd.DataFrame, state, source: str, continues_from: str) -> str | None:
    """`gap_warning` for a history model's file: its first time against the state it continues from."""
    schema = det.dataset_schema if getattr(det, "schema", None) is not None else None
    if schema is None or schema.history is None:
        return None
    from aedetect.data.history import gap_warning, state_times, table_inputs

    t = table_inputs(df, schema)[0]
    state = state if state is not None else getattr(det, "history_state_", None)
    first = float(np.nanmin(t)) if np.isfinite(t).any() else float("nan")
    return gap_warning(state_times(state), first, schema, source=source, continues_from=continues_from)


RECALL_FROM_VERDICTS = ("not computed: only flagged rows are reviewed, so the frauds among the "
                        "rows that were not flagged are unknown")


def verdict_precision(verdicts: np.ndarray, flags: np.ndarray) -> dict:
    """Among the `flags`-ed rows whose verdict (1 fraud, 0 legit, NaN none) is known: fraud,
    legit, precision = fraud / (fraud + legit), and the share of flagged rows reviewed. Rows
    without a verdict are not counted; recall is not computed (`RECALL_FROM_VERDICTS`)."""
    v = verdicts[flags]
    fraud, legit = int((v == 1).sum()), int((v == 0).sum())
    reviewed, flagged = fraud + legit, int(flags.sum())
    return {"flagged": flagged, "reviewed": reviewed, "fraud": fraud, "legit": legit,
            "reviewed_share": reviewed / flagged if flagged else None,
            "precision": fraud / reviewed if reviewed else None, "recall": None,
            "recall_note": RECALL_FROM_VERDICTS}


def reference_summary(ref: Reference) -> dict:
    f = ref.flagged
    return {"source": ref.source, "threshold": ref.threshold, "columns": len(ref.columns),
            "flagged_share": {k: f[k] for k in ("value", "low", "high", "level")},
            "anomaly_share": f.get("anomaly_share"), "validation_rows": ref.score["n"],
            "young_columns": (young_columns(ref) or ([],))[0],
            "score_young": bool(ref.score.get("young"))}


def young_hint(ref: Reference) -> list[str]:
    """A line when the reference's rows had too little entity history for some columns (their
    drift is shown and never alarms), saying what would let them be judged."""
    found = young_columns(ref)
    if found is None:
        return []
    young, need, had = found
    names = ", ".join(young[:3]) + (f" and {len(young) - 3} more" if len(young) > 3 else "")
    score = " and the score" if ref.score.get("young") else ""
    return [f"{len(young)} history column(s){score} are shown but never alarm: the reference rows had at most "
            f"{had:.1f} days of entity history and these columns need up to {need:g} days before their values "
            f"settle ({names}); to judge them, train on a log with {need:g} days before its validation rows, "
            "or pass --reference with normal rows from a period that long after the log began"]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def retraining_hint(windows: list[dict], top: int = 3) -> list[str]:
    """One line per alarmed window: the columns that moved most, and how the flagged share moved."""
    lines = []
    for w in windows:
        if not w["alarm"]:
            continue
        cols = sorted(w["columns"].items(), key=lambda kv: -kv[1]["psi"])[:top]
        moved = ", ".join(f"{c} (PSI {t['psi']:.2f}" + (f", median {t['median_shift']:+.2f} IQR"
                                                         if t.get("median_shift") is not None else "")
                          + ("" if t["alarm"] else ", young reference" if t.get("young") else ", below the alarm")
                          + ")" for c, t in cols)
        f = w["flagged"]
        line = (f"{w['window']}: columns that moved most: {moved}; score PSI {w['score']['psi']:.2f}; "
                f"flagged {_pct(f['share'])} ({f['k']:,} of {f['n']:,} rows) against the promised "
                f"{_pct(f['low'])}-{_pct(f['high'])}")
        a = (w.get("labels") or {}).get("anomaly_share")
        if a and a["alarm"]:
            line += f"; labelled anomalies {_pct(a['share'])} against {_pct(a['low'])}-{_pct(a['high'])}"
        lines.append(line)
    return lines


def table_rows(result: dict) -> list[list[str]]:
    rows = []
    for w in result["windows"]:
        cols = w["columns"]
        judged = [c for c in cols if not cols[c].get("young")] or list(cols)  # the young only when all are
        worst = max(judged, key=lambda c: cols[c]["psi"]) if cols else None
        f, lab = w["flagged"], w.get("labels") or {}
        pr = "-"
        if lab:
            p, r = lab.get("precision"), lab.get("recall")
            pr = f"{'-' if p is None else f'{p:.2f}'} / {'-' if r is None else f'{r:.2f}'} ({lab['tp'] + lab['fn']})"
        elif w.get("verdicts"):
            v = w["verdicts"]
            p = "-" if v["precision"] is None else f"{v['precision']:.2f}"
            pr = (f"{p} ({v['fraud']}/{v['reviewed']}; {_pct(v['reviewed_share'])} reviewed)" if v["flagged"]
                  else "- (no flagged row)")
        rows.append([
            w["window"], f"{w['rows']:,}", f"{w['scored_rows']:,}", f"{w['unscored_rows']:,}",
            f"{len(w['drifted_columns'])}/{len(cols) - len(w.get('young_columns', []))}"
            + (f" ({len(w['young_columns'])} young)" if w.get("young_columns") else ""),
            f"{worst} {cols[worst]['psi']:.2f}" + (" (young)" if cols[worst].get("young") else "") if worst else "-",
            f"{w['score']['psi']:.2f}" + (" (young)" if w["score"].get("young") else ""),
            f"{_pct(f['share'])} vs {_pct(f['low'])}-{_pct(f['high'])}", pr,
            "ALARM" if w["alarm"] else w["status"]])
    return rows


HEADER = ["window", "rows", "scored", "unscored", "columns drifted", "top column PSI", "score PSI",
          "flagged vs promise", "precision / recall (anomalies)", "alarm"]
VERDICTS_HEADER = "precision from verdicts (fraud/reviewed; flagged reviewed)"


def verdicts_only(result: dict) -> bool:
    """True when the precision column comes from verdicts: no window has labels of its own."""
    windows = result["windows"]
    return any("verdicts" in w for w in windows) and not any(w.get("labels") for w in windows)


def header(result: dict) -> list[str]:
    """`HEADER`, its precision column named after where it comes from."""
    return [VERDICTS_HEADER if h == HEADER[8] and verdicts_only(result) else h for h in HEADER]


def rich_table(result: dict):
    from rich.table import Table

    s = result["settings"]
    table = Table(title=f"drift against the reference (alarm: adjusted p < {s['alpha']} and PSI >= "
                  f"{s['psi_alarm']}; shares off their interval by x{s['share_ratio']})")
    for h in header(result):
        table.add_column(h, justify="left" if h in ("window", "top column PSI") else "right")
    status = {"ALARM": "[bold red]ALARM[/bold red]", "not judged": "[yellow]not judged[/yellow]"}
    for row in table_rows(result):
        table.add_row(*row[:-1], status.get(row[-1], row[-1]))
    return table


def markdown_table(result: dict) -> str:
    lines = ["| " + " | ".join(header(result)) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table_rows(result)]) + "\n"


# -- HTML -------------------------------------------------------------------------------------

def _flagged_figure(windows: list[dict]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    x = np.arange(len(windows))
    f = [w["flagged"] for w in windows]
    ax.fill_between(x, [100 * v["low"] for v in f], [100 * v["high"] for v in f], color="#4c72b0",
                    alpha=0.2, label="promised interval")
    ax.plot(x, [100 * (v["share"] or 0) for v in f], "o-", color="#dd5555", label="flagged share")
    ax.set_xticks(x, [w["window"] for w in windows], rotation=30, ha="right")
    ax.set_ylabel("% of rows flagged")
    ax.legend(frameon=False)
    return fig


def _psi_heatmap(windows: list[dict], psi_alarm: float):
    import matplotlib.pyplot as plt

    cols = list(windows[0]["columns"])
    m = np.array([[w["columns"][c]["psi"] for c in cols] + [w["score"]["psi"]] for w in windows])
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(cols) + 2), 0.45 * len(windows) + 1.6))
    # the colour scale follows the columns; the score (often far larger) saturates, and every cell
    # at or above the alarm level carries its value
    im = ax.imshow(m, aspect="auto", cmap="Reds", vmin=0, vmax=max(2 * psi_alarm, float(m[:, :-1].max())))
    for (i, j), v in np.ndenumerate(m):
        if v >= psi_alarm:
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(cols) + 1), [*cols, "SCORE"], rotation=90)
    ax.set_yticks(range(len(windows)), [w["window"] for w in windows])
    fig.colorbar(im, ax=ax, label="PSI")
    return fig


def _window_figure(ref: Reference, w: dict, scores: np.ndarray, psi_alarm: float):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    edges = ref.score["edges"]
    expected = np.asarray(ref.score["counts"][:-1], dtype="float64")
    got = numeric_counts(scores[np.isfinite(scores)], edges).astype("float64")
    x = np.arange(len(expected))
    a.bar(x - 0.2, expected / max(expected.sum(), 1), 0.4, label="reference", color="#4c72b0")
    a.bar(x + 0.2, got / max(got.sum(), 1), 0.4, label="window", color="#dd5555")
    a.set_xlabel("score decile of the reference (last bin: above the 90th percentile)")
    a.set_ylabel("share of rows")
    a.legend(frameon=False)
    cols = sorted(w["columns"].items(), key=lambda kv: -kv[1]["psi"])[:10]
    b.barh([c for c, _ in cols][::-1], [t["psi"] for _, t in cols][::-1],
           color=["#dd5555" if t["alarm"] else "#999999" for _, t in cols][::-1])
    b.axvline(psi_alarm, color="#222222", ls="--", lw=1)
    b.set_xlabel("PSI (red: alarm)")
    fig.suptitle(w["window"])
    return fig


def drift_report(result: dict, ref: Reference, window_scores: list[np.ndarray], title: str):
    """The HTML report (see `aedetect.evaluation.report.Report`) of a `monitor_frame` result."""
    from aedetect.evaluation.report import Report

    rep = Report(title)
    s, r = result["settings"], result["reference"]
    rep.para(f"{result['source']}: {result['rows']:,} rows, {result['unscored']['rows']:,} of them "
             f"could not be scored; {len(result['windows'])} window(s), compared with the reference "
             f"taken at training ({r['source']}). Threshold {r['threshold']:.4g}; promised flagged share "
             f"{_pct(r['flagged_share']['low'])}-{_pct(r['flagged_share']['high'])}.")
    rep.heading("Windows")
    rep.table(header(result), table_rows(result))
    if verdicts_only(result):
        rep.para(f"Precision from the verdicts of reviewed alerts (found by {result['verdicts_by']!r}): "
                 "among a window's flagged rows that were reviewed, fraud / (fraud + legit); flagged rows "
                 f"without a verdict are not counted. Recall: {RECALL_FROM_VERDICTS}.", "note")
    rep.para(f"A column or the score alarms when its change is significant (KS for numbers, chi-square "
             f"for categories, p-values adjusted by Benjamini-Hochberg across every test of the window, "
             f"< {s['alpha']}) and large (PSI >= {s['psi_alarm']}). The flagged share alarms when a "
             f"binomial test rejects its promised interval and it is off by a factor of at least "
             f"{s['share_ratio']}. A window where more than half the rows could not be scored is not judged; "
             f"one with fewer than {result['min_rows']:,} scored rows never alarms.", "note")
    if result["hint"]:
        rep.heading("What moved")
        rep.warnings(result["hint"])
    rep.heading("Figures")
    rep.figure("flagged_share", _flagged_figure(result["windows"]), "Flagged share per window and "
               "the promised interval.", wide=True)
    if result["windows"][0]["columns"]:
        rep.figure("psi", _psi_heatmap(result["windows"], s["psi_alarm"]), "PSI of each column and "
                   "of the score, per window.", wide=True)
    for i, (w, sc) in enumerate(zip(result["windows"], window_scores, strict=True)):
        rep.figure(f"window_{i}", _window_figure(ref, w, sc, s["psi_alarm"]),
                   f"{w['window']}: score distribution against the reference, and the columns "
                   "that moved most.", wide=True)
    return rep


def write_outputs(run: MonitorResult, ref: Reference, report_dir, title: str, *, overwrite: bool = True) -> Path:
    """drift.json, drift.md and report.html with its PNGs in `report_dir` (an existing one replaced
    only with `overwrite`, and only when aedetect wrote it)."""
    rep = drift_report(run.summary, ref, run.window_scores, title)
    return rep.write(report_dir, extra={"drift.json": json.dumps(run.summary, indent=2) + "\n",
                                        "drift.md": markdown_table(run.summary)}, overwrite=overwrite)
