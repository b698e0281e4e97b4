"""Metrics on a labelled set: threshold-free (ROC-AUC, PR-AUC, operating points) and at a cut."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

GUIDE_THRESHOLD = 10.0
GUIDE_PRECISION = 0.93
GUIDE_RECALL = 0.433

# The guide's published figures, printed beside ours (test set of ~34,000 rows, 480 frauds).
GUIDE_RESULT = {
    "threshold": 10.0,
    "precision": 0.93,
    "recall": 0.433,
    "mean_mse_normal": 0.385,
    "mean_mse_fraud": 19.5,
}


def recall_at_precision(y, scores, min_precision: float) -> float:
    """The best recall over all cuts whose precision is at least `min_precision` (0 if none)."""
    precision, recall, _ = precision_recall_curve(y, scores)
    ok = precision >= min_precision
    return float(recall[ok].max()) if ok.any() else 0.0


def precision_at_recall(y, scores, min_recall: float) -> float:
    """The best precision over all cuts whose recall is at least `min_recall`."""
    precision, recall, _ = precision_recall_curve(y, scores)
    ok = recall >= min_recall
    return float(precision[ok].max())


def at_threshold(y, scores, threshold: float) -> dict:
    """Precision, recall, F1 and the confusion matrix when rows with score > threshold are flagged."""
    y = np.asarray(y)
    flags = (np.asarray(scores) > threshold).astype(int)
    p, r, f, _ = precision_recall_fscore_support(y, flags, average="binary", zero_division=0)
    tn, fp, fn, tp = confusion_matrix(y, flags, labels=[0, 1]).ravel()
    return {"threshold": float(threshold), "precision": float(p), "recall": float(r),
            "f1": float(f), "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
            "n_flagged": int(flags.sum())}


def evaluate_scores(y, scores, threshold: float, mse=None,
                    guide_threshold: float = GUIDE_THRESHOLD) -> dict:
    """All test-set metrics for one score vector: the flat keys of metrics.json.

    `mse`: each row's reconstruction MSE, when the score is something else; the guide's
    threshold and the mean-MSE figures refer to the MSE.
    """
    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype="float64")
    mse = scores if mse is None else np.asarray(mse, dtype="float64")
    if y.shape != scores.shape:
        raise ValueError(f"labels and scores differ in shape: {y.shape} vs {scores.shape}")
    n_fraud = int(y.sum())
    if n_fraud == 0 or n_fraud == len(y):
        raise ValueError(f"evaluation needs both classes; got {n_fraud} anomalies in {len(y)} rows")
    chosen = at_threshold(y, scores, threshold)
    guide = at_threshold(y, mse, guide_threshold)
    return {
        "n_test": int(len(y)),
        "n_test_fraud": n_fraud,
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "recall_at_precision_0_93": recall_at_precision(y, scores, GUIDE_PRECISION),
        "precision_at_recall_0_433": precision_at_recall(y, scores, GUIDE_RECALL),
        "mean_mse_normal": float(mse[y == 0].mean()),
        "mean_mse_fraud": float(mse[y == 1].mean()),
        "threshold": chosen["threshold"],
        "precision": chosen["precision"],
        "recall": chosen["recall"],
        "f1": chosen["f1"],
        "confusion_matrix": {k: chosen[k] for k in ("tn", "fp", "fn", "tp")},
        "at_guide_threshold": guide,
    }


def at_alert_budget(y, scores, alerts_per_day: float, per_day: float) -> dict:
    """Precision and recall of the top-scored rows an alert budget allows on these rows.

    The rows are taken as a sample of a stream of `per_day` rows a day, so
    round(len(y) * alerts_per_day / per_day) alerts are raised (at least one).
    """
    y, scores = np.asarray(y).astype(int), np.asarray(scores, dtype="float64")
    k = max(1, int(round(len(y) * alerts_per_day / per_day)))
    top = np.argsort(-scores, kind="stable")[:k]
    caught = int(y[top].sum())
    return {"alerts_per_day": float(alerts_per_day), "n_alerts": k,
            "precision": caught / k, "recall": caught / max(1, int(y.sum()))}
