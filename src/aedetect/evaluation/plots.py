"""Figures of the evaluation report (matplotlib, Agg backend: no display needed).

Every function takes plain arrays and returns a Figure; `png_bytes` renders one and closes it.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

NORMAL, ANOMALY, CUT = "#4c72b0", "#dd5555", "#222222"


def png_bytes(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _threshold_line(ax, threshold: float | None) -> None:
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color=CUT, ls="--", lw=1.2, label=f"threshold {threshold:.3g}")


def error_histogram(y, scores, threshold: float | None, label: str = "reconstruction error"):
    """Per-class histograms on a log scale: each class as a share of its own rows."""
    y, s = np.asarray(y).astype(int), np.asarray(scores, dtype="float64")
    positive = s[s > 0]
    lo = positive.min() if positive.size else 1e-6
    bins = np.logspace(np.log10(lo), np.log10(max(s.max(), lo * 10)), 60)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for cls, name, color in ((0, "normal", NORMAL), (1, "anomaly", ANOMALY)):
        part = np.clip(s[y == cls], bins[0], bins[-1])
        if part.size:
            ax.hist(part, bins=bins, weights=np.full(part.size, 1 / part.size), color=color,
                    alpha=0.55, label=f"{name} ({part.size:,} rows)")
    _threshold_line(ax, threshold)
    ax.set_xscale("log")
    ax.set_xlabel(f"{label} (log scale)")
    ax.set_ylabel("share of the class's rows")
    ax.set_title("Score per class")
    ax.legend(frameon=False)
    return fig


def pr_curves(curves: dict, operating_point: tuple[float, float] | None = None):
    """Precision-recall curves of one or more methods on the same labelled rows."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    prevalence = None
    for name, (y, scores) in curves.items():
        p, r, _ = precision_recall_curve(y, scores)
        ax.plot(r, p, lw=1.5, label=name)
        prevalence = float(np.mean(y))
    if prevalence is not None:
        ax.axhline(prevalence, color="#999999", lw=1, ls=":", label=f"chance ({prevalence:.4f})")
    if operating_point is not None:
        ax.plot(operating_point[1], operating_point[0], "o", color=CUT, label="at the threshold")
    ax.axhline(0.93, color="#bbbbbb", lw=0.8, ls="--")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall")
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    return fig


def roc_curves(curves: dict):
    """ROC curves, false-positive rate on a log scale (the region a fraud team works in)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (y, scores) in curves.items():
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(np.maximum(fpr, 1e-5), tpr, lw=1.5, label=name)
    ax.set_xscale("log")
    ax.set(xlabel="false-positive rate (log scale)", ylabel="true-positive rate (recall)",
           xlim=(1e-5, 1), ylim=(0, 1.02), title="ROC")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return fig


def threshold_sweep(y, scores, threshold: float | None):
    """Precision, recall and F1 as the threshold moves."""
    p, r, cuts = precision_recall_curve(y, scores)
    p, r = p[:-1], r[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.maximum(cuts, 1e-12)
    for values, name in ((p, "precision"), (r, "recall"), (f1, "F1")):
        ax.plot(x, values, lw=1.4, label=name)
    _threshold_line(ax, threshold)
    ax.set_xscale("log")
    ax.set(xlabel="threshold (log scale)", ylim=(0, 1.02), title="Precision, recall and F1 by threshold")
    ax.legend(frameon=False)
    return fig


def confusion(cm: dict):
    """The confusion matrix at the threshold, with counts."""
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(np.log1p(grid), cmap="Blues")
    names = [["true normal", "false alert"], ["missed anomaly", "caught anomaly"]]
    for i in range(2):
        for j in range(2):
            dark = np.log1p(grid[i, j]) > np.log1p(grid).max() * 0.6
            ax.text(j, i, f"{grid[i, j]:,}\n{names[i][j]}", ha="center", va="center",
                    color="white" if dark else "black", fontsize=9)
    ax.set_xticks([0, 1], ["not flagged", "flagged"])
    ax.set_yticks([0, 1], ["normal", "anomaly"])
    ax.set_title("Confusion matrix")
    return fig


def loss_history(history: dict, best_epoch: int | None = None):
    """Training and validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, name in (("loss", "training"), ("val_loss", "validation")):
        values = history.get(key) or []
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=name)
    if best_epoch:
        ax.axvline(best_epoch, color=CUT, ls="--", lw=1, label=f"best epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="loss (MSE)", title="Loss per epoch")
    ax.set_yscale("log")
    ax.legend(frameon=False)
    return fig


def feature_shares(errors: np.ndarray) -> np.ndarray:
    """Each feature's mean share of a row's total error (rows with zero error are skipped)."""
    errors = np.asarray(errors, dtype="float64")
    total = errors.sum(axis=1, keepdims=True)
    keep = total[:, 0] > 0
    if not keep.any():
        return np.zeros(errors.shape[1])
    return (errors[keep] / total[keep]).mean(axis=0)


def feature_contributions(errors: np.ndarray, names: list[str], groups: dict, top: int = 10):
    """Which features carry the error of each group of rows (e.g. caught and missed anomalies)."""
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 0.32 * top + 1.4),
                             squeeze=False)
    for ax, (title, mask) in zip(axes[0], groups.items(), strict=True):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            ax.text(0.5, 0.5, "no rows", ha="center", va="center")
            ax.set_axis_off()
            ax.set_title(f"{title} (0 rows)")
            continue
        share = feature_shares(errors[mask])
        order = np.argsort(share)[::-1][:top][::-1]
        ax.barh([names[i] for i in order], 100 * share[order], color=ANOMALY)
        ax.set(xlabel="mean share of the row's error (%)", title=f"{title} ({int(mask.sum())} rows)")
    fig.tight_layout()
    return fig
