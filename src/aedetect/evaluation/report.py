"""The evaluation report: one self-contained `report.html` (PNGs embedded as base64, no scripts,
no links: it opens offline), the same PNGs as files, and `metrics.json`.

`Report` collects headings, paragraphs, tables and figures; `evaluation_report` fills one for a
trained detector on labelled rows. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from aedetect.evaluation import plots
from aedetect.files import atomic_folder

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1080px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 10px;
text-align:right;white-space:nowrap}th{background:#f4f4f4;white-space:normal}td:first-child,th:first-child{text-align:left;white-space:normal}
table.text td,table.text th{text-align:left;white-space:normal}
.warn{background:#fff6d6;border-left:4px solid #e0a800;padding:8px 12px;margin:8px 0}
.note{color:#555;font-size:.92em}.tag{display:inline-block;background:#e8eefc;color:#234;
border-radius:4px;padding:0 6px;font-size:.8em;margin-left:6px}
figure{display:inline-block;width:48%;margin:8px 1% 8px 0;vertical-align:top}
figure.wide{width:98%}figcaption{font-size:.85em;color:#555}img{max-width:100%}
"""
TEST_ONLY = '<span class="tag">test set only</span>'


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return f"{v:.4g}" if v == 0 or abs(v) >= 1e-3 else f"{v:.2e}"
    return str(v)


def interval(d: dict | None) -> str:
    """'0.812 (0.71-0.90)' from {"value", "low", "high"}."""
    if not d or d.get("value") is None:
        return "-"
    if d.get("low") is None:
        return fmt(d["value"])
    return f"{d['value']:.3f} ({d['low']:.3f}-{d['high']:.3f})"


class Report:
    def __init__(self, title: str):
        self.title = title
        self.blocks: list[str] = []
        self.images: dict[str, bytes] = {}

    def heading(self, text: str, test_only: bool = False) -> None:
        self.blocks.append(f"<h2>{html.escape(text)}{TEST_ONLY if test_only else ''}</h2>")

    def para(self, text: str, css: str = "") -> None:
        cls = f' class="{css}"' if css else ""
        self.blocks.append(f"<p{cls}>{html.escape(text)}</p>")

    def warnings(self, items) -> None:
        for w in items:
            self.blocks.append(f'<div class="warn">{html.escape(w)}</div>')

    def table(self, header: list[str], rows: list[list], css: str = "") -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c if isinstance(c, str) else fmt(c))}</td>"
                                        for c in row) + "</tr>" for row in rows)
        cls = f' class="{css}"' if css else ""
        self.blocks.append(f"<table{cls}><tr>{head}</tr>{body}</table>")

    def figure(self, name: str, fig, caption: str, wide: bool = False) -> None:
        png = plots.png_bytes(fig)
        self.images[f"{name}.png"] = png
        data = base64.b64encode(png).decode("ascii")
        cls = ' class="wide"' if wide else ""
        self.blocks.append(f'<figure{cls}><img alt="{html.escape(caption)}" src="data:image/png;base64,'
                           f'{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')

    def html(self) -> str:
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>{''.join(self.blocks)}</body></html>\n")

    def write(self, out_dir, metrics: dict | None = None, extra: dict[str, str] | None = None, *,
              overwrite: bool = True) -> Path:
        """Write report.html, the PNGs, metrics.json and `extra` text files into `out_dir`."""
        out_dir = Path(out_dir)
        # A new folder, renamed into place; with `overwrite` it replaces a report folder aedetect
        # wrote (and an empty folder), never a folder holding anything else (aedetect.files).
        with atomic_folder(out_dir, overwrite=overwrite) as tmp:
            for name, text in (extra or {}).items():
                (tmp / name).write_bytes(text.encode("utf-8"))
            for name, png in self.images.items():
                (tmp / name).write_bytes(png)
            if metrics is not None:
                (tmp / "metrics.json").write_bytes((json.dumps(metrics, indent=2) + "\n").encode())
            (tmp / "report.html").write_bytes(self.html().encode("utf-8"))
        return out_dir / "report.html"


def threshold_section(rep: Report, m: dict) -> None:
    """The threshold, how it was chosen, and how sure we are about it."""
    rep.heading("Threshold")
    params = ", ".join(f"{k}={fmt(v)}" for k, v in (m.get("threshold_params") or {}).items())
    rep.para(f"Rule {m['threshold_rule']}({params}) chose {fmt(m['threshold'])} from "
             f"{m.get('threshold_source') or 'given value'}. Rows scoring above it are flagged.")
    est, boot = m.get("threshold_estimate") or {}, m.get("intervals") or {}
    rows = []
    if est:
        rows.append([f"expected, on the {est.get('rows', 'selection set')}", interval(est["precision"]),
                     interval(est["recall"]), est["n_flagged"]])
    if boot:
        rows.append(["measured on the test set", interval(boot["precision"]), interval(boot["recall"]),
                     boot["n_flagged"]])
    if rows:
        level = int(round(100 * (est or boot).get("level", 0.95)))
        rep.table(["at this threshold", f"precision ({level}% interval)", f"recall ({level}% interval)",
                   "rows flagged"], rows)
        rep.para("Intervals: exact (Clopper-Pearson) binomial intervals of the labelled rows at this "
                 "threshold; they cover sampling noise, not the choice of the threshold itself.", "note")
    rep.warnings(m.get("threshold_warnings") or [])


def evaluation_report(det, y, scores, feature_errors, m: dict, title: str) -> Report:
    """The report of one detector on labelled rows (`m` from `train.evaluate_detector`)."""
    y, scores = np.asarray(y).astype(int), np.asarray(scores, dtype="float64")
    rep = Report(title)
    rep.para(f"{m.get('protocol', '')} protocol, seed {m.get('seed', '-')}. Every number and figure "
             "below except the threshold's expected precision/recall and the loss curves comes from "
             "the test set only: rows never used for training, early stopping or choosing the threshold.")
    rep.heading("Summary", test_only=True)
    budget = m.get("alert_budget")
    rows = [["test rows / anomalies", f"{m['n_test']:,} / {m['n_test_fraud']:,}"],
            ["PR-AUC (average precision)", m["pr_auc"]], ["ROC-AUC", m["roc_auc"]],
            ["recall at precision >= 0.93", m["recall_at_precision_0_93"]],
            ["precision / recall / F1 at the threshold",
             f"{m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f}"]]
    if budget:
        rows.append([f"top {budget['n_alerts']} alerts ({fmt(budget['alerts_per_day'])} a day): precision / recall",
                     f"{budget['precision']:.3f} / {budget['recall']:.3f}"])
    rep.table(["metric", "value"], rows)
    threshold_section(rep, m)
    t = m["threshold"]
    rep.heading("Figures", test_only=True)
    score_name = getattr(det, "score_type", "mse")
    rep.figure("histogram", plots.error_histogram(y, scores, t, label=f"anomaly score: {score_name}"),
               f"The anomaly score ({score_name}) of normal rows and anomalies, log scale, "
               "threshold dashed.")
    rep.figure("pr_curve", plots.pr_curves({"autoencoder": (y, scores)}, (m["precision"], m["recall"])),
               "Precision against recall over all thresholds; the dot is the chosen one.")
    rep.figure("roc_curve", plots.roc_curves({"autoencoder": (y, scores)}), "ROC curve.")
    rep.figure("threshold_sweep", plots.threshold_sweep(y, scores, t),
               "How precision, recall and F1 move with the threshold.")
    rep.figure("confusion_matrix", plots.confusion(m["confusion_matrix"]), "Counts at the threshold.")
    flags = scores > t
    rep.figure("feature_errors", plots.feature_contributions(
        feature_errors, list(det.feature_names_out_),
        {"caught anomalies": (y == 1) & flags, "missed anomalies": (y == 1) & ~flags}),
        "Features that carry most of the reconstruction error of caught and of missed anomalies "
        "(mean share of each row's error).", wide=True)
    history = getattr(det, "history_", None) or {}
    if history:
        rep.heading("Training")
        rep.figure("loss", plots.loss_history(history, getattr(det, "best_epoch_", None)),
                   "Training loss (training normals) and validation loss (validation normals).")
    return rep
