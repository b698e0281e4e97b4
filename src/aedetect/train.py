"""Library functions behind the CLI: load data, split, train, choose a threshold, evaluate.

Every command of the CLI is a thin wrapper over one of these, so each is callable from Python.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from aedetect.config import TrainConfig
from aedetect.data.schema import CREDITCARD, Schema
from aedetect.data.splits import Split, make_split
from aedetect.detector import AutoencoderDetector
from aedetect.errors import AedetectError
from aedetect.evaluation import at_alert_budget, evaluate_scores
from aedetect.thresholds import Threshold, choose_threshold, rows_per_day
from aedetect.uncertainty import bootstrap_precision_recall, small_sample_warnings


@dataclass
class TrainResult:
    detector: AutoencoderDetector
    split: Split
    config: TrainConfig
    data_fingerprint: str


def frame_fingerprint(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    h.update(np.ascontiguousarray(df.to_numpy(dtype="float64")).tobytes())
    return "sha256:" + h.hexdigest()


def split_frame(df: pd.DataFrame, config: TrainConfig, schema: Schema = CREDITCARD) -> Split:
    time = df[schema.time].to_numpy() if schema.time else None
    return make_split(config.protocol, df[schema.label].to_numpy(), time, config.seed)


def new_detector(config: TrainConfig, schema: Schema = CREDITCARD, verbose: int = 0):
    return AutoencoderDetector(**config.detector_params(), log_columns=schema.log_columns,
                               periodic_columns=schema.periodic_columns, verbose=verbose)


def train_detector(
    df: pd.DataFrame,
    config: TrainConfig,
    schema: Schema = CREDITCARD,
    *,
    callbacks=(),
    work_dir: str | os.PathLike | None = None,
) -> TrainResult:
    """Split `df`, train on the training normals, then apply the configured threshold rule.

    With `input_pipeline="tfrecord"` the training and validation normals are first written as
    TFRecord shards under `work_dir` and training streams from them.
    """
    split = split_frame(df, config, schema)
    features = list(schema.features)
    det = new_detector(config, schema)
    if config.input_pipeline == "tfrecord":
        from aedetect.data.tfdata import read_tfrecords

        if work_dir is None:
            raise ValueError("the tfrecord input pipeline needs a work_dir for its shards")
        shard_dir = write_split_tfrecords(df, split, work_dir, schema)
        det.fit(read_tfrecords(shard_dir, "train", seed=config.seed),
                validation_data=read_tfrecords(shard_dir, "validation", seed=None),
                callbacks=callbacks, feature_names=features)
    else:
        det.fit(df.iloc[split.train][features], validation_data=df.iloc[split.validation][features],
                callbacks=callbacks)
    det.threshold = select_threshold(det, df, split, config, schema)
    return TrainResult(det, split, config, frame_fingerprint(df))


def write_split_tfrecords(df, split: Split, out_dir, schema: Schema = CREDITCARD) -> Path:
    """Write each part of a split as TFRecord shards (raw columns, labels) plus meta.json."""
    from aedetect.data.tfdata import write_meta, write_tfrecords

    features = list(schema.features)
    for name in ("train", "validation", "selection", "test"):
        rows = df.iloc[getattr(split, name)]
        write_tfrecords(rows[features].to_numpy(), out_dir, name, y=rows[schema.label].to_numpy())
    write_meta(out_dir, {"feature_names": features, "label": schema.label,
                         "protocol": split.protocol, "seed": split.seed, "sizes": split.sizes()})
    return Path(out_dir)


def stream_sample(split: Split) -> tuple[np.ndarray, str]:
    """Rows that stand for the unlabelled stream, for label-free rules that count alerts.

    Time protocol: the selection window (every row of a stretch of time). Guide protocol: the
    validation normals, since its selection set is enriched to 5% anomalies.
    """
    if split.protocol == "time":
        return split.selection, "selection window"
    return split.validation, "validation normals"


def select_threshold(det, df, split: Split, config: TrainConfig, schema: Schema = CREDITCARD):
    """Apply the configured rule: label-free rules see validation normals (or the selection
    window of the time protocol), labelled rules see only the selection set, never the test set.

    The result carries precision and recall on the selection set with bootstrap intervals, and
    warnings when that set is too small to support the rule.
    """
    rule = config.threshold_rule
    features = list(schema.features)
    sel = df.iloc[split.selection]
    y_sel = sel[schema.label].to_numpy()
    sel_scores = det.score_samples(sel[features])
    sel_source = f"selection set ({int(y_sel.sum())} anomalies, {int((y_sel == 0).sum())} normals)"
    if rule == "fixed":
        t = choose_threshold("fixed", value=config.threshold_value if
                             config.threshold_value is not None else 10.0)
    elif rule == "normal_percentile":
        t = det.threshold  # fit() set it from the validation normals
    elif rule in ("contamination", "alert_budget"):
        rows, name = stream_sample(split)
        scores = sel_scores if rows is split.selection else det.score_samples(df.iloc[rows][features])
        per_day = None
        if rule == "alert_budget":
            if not schema.time:
                raise AedetectError("the alert_budget rule needs a time column to count days")
            per_day = rows_per_day(df[schema.time].to_numpy())
        t = choose_threshold(rule, scores=scores, alerts_per_day=config.alerts_per_day,
                             per_day=per_day, share=config.contamination,
                             source=f"{name} ({len(rows)} rows)")
    else:
        amounts = None
        if rule == "expected_cost" and config.cost_per_amount:
            if "Amount" not in sel:
                raise AedetectError("cost_per_amount needs an 'Amount' column")
            amounts = sel["Amount"].to_numpy()
        t = choose_threshold(rule, scores=sel_scores, y=y_sel, precision=config.min_precision,
                             fpr=config.max_fpr, cost_missed=config.cost_missed,
                             cost_review=config.cost_review, amounts=amounts, source=sel_source)
    if not ((y_sel == 1).any() and (y_sel == 0).any()):
        return t
    estimate = bootstrap_precision_recall(y_sel, sel_scores, t.value, seed=config.seed)
    estimate["rows"] = sel_source
    warnings = small_sample_warnings(t.rule, t.params, y_sel, n_flagged=estimate["n_flagged"],
                                     stream_anomaly_share=float(df[schema.label].mean()))
    return replace(t, estimate=estimate, warnings=warnings)


def evaluate_detector(det, df, rows: np.ndarray | None, schema: Schema = CREDITCARD,
                      *, threshold: Threshold | None = None, alerts_per_day: float = 50.0,
                      seed: int = 0) -> dict:
    """Metrics of `det` on `df.iloc[rows]` (all rows when None) at its own threshold, with
    bootstrap intervals for precision and recall and the precision of a daily alert budget."""
    part = df if rows is None else df.iloc[rows]
    y = part[schema.label].to_numpy()
    x = part[list(schema.features)]
    t = threshold or det.threshold
    scores, errors = det.score_and_errors(x)
    mse = errors.mean(axis=1)
    metrics = evaluate_scores(y, scores, t.value, mse=mse)
    metrics["score"] = det.score
    metrics["threshold_rule"] = t.rule
    metrics["threshold_source"] = t.source
    metrics["threshold_params"] = t.params
    metrics["threshold_estimate"] = t.estimate
    metrics["threshold_warnings"] = t.warnings
    metrics["bootstrap"] = bootstrap_precision_recall(y, scores, t.value, seed=seed)
    if schema.time:
        metrics["alert_budget"] = at_alert_budget(y, scores, alerts_per_day,
                                                  rows_per_day(df[schema.time].to_numpy()))
    return metrics
