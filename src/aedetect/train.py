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
from aedetect.evaluation import evaluate_detector  # noqa: F401  (the evaluation's home)
from aedetect.monitor import training_reference
from aedetect.thresholds import choose_threshold, get_rule, rows_per_day
from aedetect.uncertainty import precision_recall_intervals, small_sample_warnings

# What a warm start may change; the rest of the parent's parameters define its network and score.
WARM_START_PARAMS = ("epochs", "learning_rate", "patience", "batch_size", "verbose")


@dataclass
class TrainResult:
    detector: AutoencoderDetector  # a HybridDetector wrapping one with config.use_labels
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
    params = {"log_columns": schema.log_columns, "periodic_columns": schema.periodic_columns,
              "verbose": verbose, **config.detector_params()}
    return AutoencoderDetector(**params)


def train_detector(
    df: pd.DataFrame,
    config: TrainConfig,
    schema: Schema = CREDITCARD,
    *,
    callbacks=(),
    work_dir: str | os.PathLike | None = None,
    warm_start: AutoencoderDetector | None = None,
) -> TrainResult:
    """Split `df`, train on the training normals, then apply the configured threshold rule.

    With `input_pipeline="tfrecord"` the training and validation normals are first written as
    TFRecord shards under `work_dir` and training streams from them. With `warm_start` (a
    fitted detector), training continues from it (see `AutoencoderDetector.fit`): its network
    and preprocessing are kept; `config` gives the seed, the threshold rule and, when given, the
    `WARM_START_PARAMS`.
    """
    split = split_frame(df, config, schema)
    features = list(schema.features)
    if warm_start is not None:
        given = {k: v for k, v in config.detector.items() if k in WARM_START_PARAMS}
        det = warm_start.set_params(**given, seed=config.seed)
        det.fit(df.iloc[split.train][features], validation_data=df.iloc[split.validation][features],
                callbacks=callbacks, warm_start=True)
    elif config.input_pipeline == "tfrecord":
        det = new_detector(config, schema)
        from aedetect.data.tfdata import read_tfrecords

        if work_dir is None:
            raise ValueError("the tfrecord input pipeline needs a work_dir for its shards")
        shard_dir = write_split_tfrecords(df, split, work_dir, schema)
        det.fit(read_tfrecords(shard_dir, "train", seed=config.seed),
                validation_data=read_tfrecords(shard_dir, "validation", seed=None),
                callbacks=callbacks, feature_names=features)
    else:
        det = new_detector(config, schema)
        det.fit(df.iloc[split.train][features], validation_data=df.iloc[split.validation][features],
                callbacks=callbacks)
    det.threshold = select_threshold(det, df, split, config, schema)
    det.reference_ = training_reference(det, df, split, schema, seed=config.seed)  # drift monitoring
    fingerprint = frame_fingerprint(df)
    # What `evaluate_model(..., rows="test")` needs to find the test rows again.
    det.split_ = {"protocol": config.protocol, "seed": config.seed, "data_fingerprint": fingerprint,
                  "sizes": split.sizes()}
    if config.use_labels:  # the same rule again, on the hybrid's fraud probability
        from aedetect.hybrid import fit_hybrid

        det = fit_hybrid(det, df, split, schema, min_anomalies=config.min_anomalies, seed=config.seed)
        det.threshold = select_threshold(det, df, split, config, schema)
    return TrainResult(det, split, config, fingerprint)


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
    """Apply the configured rule (`aedetect.thresholds.RULES`): label-free rules see validation
    normals (or the selection window of the time protocol), labelled rules see only the
    selection set, never the test set.

    The result carries precision and recall on the selection set with exact binomial
    intervals, and warnings when that set is too small to support the rule.
    """
    rule = get_rule(config.threshold_rule)
    features = list(schema.features)
    sel = df.iloc[split.selection]
    y_sel = sel[schema.label].to_numpy()
    sel_scores = det.anomaly_score(sel[features])
    sel_source = f"selection set ({int(y_sel.sum())} anomalies, {int((y_sel == 0).sum())} normals)"
    params = {p: config.param(field) for p, field in rule.config.items()}
    if rule.data == "normal":
        t = det.threshold  # fit() set it from the validation normals
    elif rule.data == "none":
        t = choose_threshold(rule.name, value=10.0 if params["value"] is None else params["value"])
    elif rule.data == "stream":
        rows, name = stream_sample(split)
        scores = sel_scores if rows is split.selection else det.anomaly_score(df.iloc[rows][features])
        if rule.name == "alert_budget":
            if not schema.time:
                raise AedetectError("the alert_budget rule needs a time column to count days")
            params["rows_per_day"] = rows_per_day(df[schema.time].to_numpy())
        t = choose_threshold(rule.name, scores=scores, source=f"{name} ({len(rows)} rows)", **params)
    else:
        if rule.name == "expected_cost" and config.cost_per_amount:
            if "Amount" not in sel:
                raise AedetectError("cost_per_amount needs an 'Amount' column")
            params["amounts"] = sel["Amount"].to_numpy()
        t = choose_threshold(rule.name, scores=sel_scores, y=y_sel, source=sel_source, **params)
    if not ((y_sel == 1).any() and (y_sel == 0).any()):
        return t
    estimate = precision_recall_intervals(y_sel, sel_scores, t.value)
    estimate["rows"] = sel_source
    warnings = small_sample_warnings(t.rule, t.params, y_sel, n_flagged=estimate["n_flagged"],
                                     stream_anomaly_share=float(df[schema.label].mean()))
    return replace(t, estimate=estimate, warnings=warnings)
