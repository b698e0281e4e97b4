"""Metrics on a labelled set: threshold-free (ROC-AUC, PR-AUC, operating points) and at a cut."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    make_scorer,
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


def _average_precision_of_outliers(y_true, decision) -> float:
    return float(average_precision_score(y_true, -np.asarray(decision, dtype="float64")))


# For GridSearchCV / cross_val_score with labels 1 = anomaly: average precision of the anomaly
# score. It reads `decision_function` (negative = outlier), so it works on a Pipeline too.
average_precision_scorer = make_scorer(_average_precision_of_outliers, response_method="decision_function")


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


@dataclass
class Evaluation:
    """A detector's metrics on labelled rows, with the per-row scores and squared errors they
    came from (one network pass), for reports."""

    metrics: dict
    y: np.ndarray
    scores: np.ndarray
    errors: np.ndarray
    detector: object = field(repr=False)


def evaluate_detector(det, df, rows: np.ndarray | None, schema=None, *, threshold=None,
                      alerts_per_day: float = 50.0, seed: int = 0, full: bool = False):
    """Metrics of `det` on `df.iloc[rows]` (all rows when None) at its own threshold, with exact
    binomial intervals for precision and recall and the precision of a daily alert budget.

    One pass through the network; `full=True` returns the `Evaluation` (scores and errors too).
    """
    from aedetect.data.schema import as_dataset_schema
    from aedetect.errors import AedetectError
    from aedetect.model.thresholds import rows_per_day
    from aedetect.model.uncertainty import precision_recall_intervals

    schema = as_dataset_schema(schema) if schema is not None else det.dataset_schema
    part = df if rows is None else df.iloc[rows]
    if schema.label is None or schema.label not in part.columns:
        raise AedetectError("evaluation needs labels: the data has no label column"
                            + (f" {schema.label!r}" if schema.label else " (name one with --label-column)"))
    y = part[schema.label].to_numpy().astype(int)
    t = threshold or det.threshold
    scores, errors = det.score_and_errors(part[list(getattr(det, "feature_names_in_", schema.features))])
    metrics = evaluate_scores(y, scores, t.value, mse=errors.mean(axis=1))
    metrics.update(score=det.score_type, threshold_rule=t.rule, threshold_source=t.source,
                   threshold_params=t.params, threshold_estimate=t.estimate,
                   threshold_warnings=t.warnings, seed=seed)
    metrics["intervals"] = precision_recall_intervals(y, scores, t.value)
    if schema.time:
        metrics["alert_budget"] = at_alert_budget(y, scores, alerts_per_day,
                                                  rows_per_day(schema.time_seconds(df)))
    return Evaluation(metrics, y, scores, errors, det) if full else metrics


def evaluate_model(model, data, rows: str = "test", *, alerts_per_day: float = 50.0,
                   source: str | None = None) -> Evaluation:
    """Evaluate a model folder (or a fitted detector) on a labelled table.

    `data`: a DataFrame or a CSV/Parquet path. `rows="test"`: the test split the model was
    trained with (`train_detector` records it; the data must be the same file), `"all"`: every row.
    """
    from aedetect.data.history import ensure_history
    from aedetect.data.io import frame_fingerprint, read_raw
    from aedetect.data.schema import check_table
    from aedetect.data.splits import TEST_SHARE, split_table
    from aedetect.errors import AedetectError
    from aedetect.model.hybrid import open_model

    det = model if hasattr(model, "anomaly_score") else open_model(model)  # hybrid folders too
    schema = det.dataset_schema
    if schema.label is None:
        raise AedetectError("this model was trained without a label column, and evaluation needs "
                            "labels; train with a label column (--label-column)")
    source = source or (str(data) if isinstance(data, (str, os.PathLike)) else "data")
    df = data if not isinstance(data, (str, os.PathLike)) else read_raw(Path(data), schema)
    df, _ = check_table(df, schema, source=source, require_label=True)
    split_info = getattr(det, "split_", None)
    if rows == "test":
        if not split_info:
            raise AedetectError("this model records no training split (it was fitted on rows you "
                                "chose, not by train_detector), so its test rows are unknown; "
                                "evaluate with rows='all' (--rows all) on held-out data")
        if split_info.get("data_fingerprint") != frame_fingerprint(df):
            raise AedetectError("the data is not the table this model was trained on, so its test "
                                "split is unknown; evaluate with rows='all' (--rows all)")
        if split_info["protocol"] == "time" and not split_info.get("sizes", {}).get("test", 1):  # no test window
            where = (f"it was tested on another file ({split_info['test_data']})" if split_info.get("test_data")
                     else "it was trained with test_share 0")
            raise AedetectError(f"this model's training data has no test rows ({where}: every row trained it "
                                "or chose its threshold); evaluate it on later data with rows='all' (--rows all)")
        protocol, seed = split_info["protocol"], split_info["seed"]
    elif rows == "all":
        idx, protocol, seed = None, "all rows", (split_info or {}).get("seed", det.seed)
    else:
        raise AedetectError(f"rows must be 'test' or 'all'; got {rows!r}")
    df = ensure_history(df, schema, getattr(det, "history_state_", None))  # over every row, then the split
    if rows == "test":
        warmup = split_info.get("history_warmup_s")
        if warmup:  # the first days' rows were history only in training (`history_warmup`)
            from aedetect.data.history import settled_rows, table_inputs

            t = table_inputs(df, schema)[0]
            state = getattr(det, "history_state_", None)
            start = state.start if state is not None and state.start is not None else np.nanmin(t)
            df = df[settled_rows(t, start, warmup)]
        idx = split_table(df, schema, protocol, seed, split_info.get("test_share", TEST_SHARE)).test
    ev = evaluate_detector(det, df, idx, schema, alerts_per_day=alerts_per_day, seed=seed, full=True)
    ev.metrics["protocol"] = protocol
    return ev
