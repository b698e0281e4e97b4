"""Library functions behind the CLI: load data, split, train, choose a threshold, evaluate.

Every command of the CLI is a thin wrapper over one of these, so each is callable from Python.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aedetect.config import TrainConfig
from aedetect.data.schema import CREDITCARD, Schema
from aedetect.data.splits import Split, make_split
from aedetect.detector import AutoencoderDetector
from aedetect.evaluation import evaluate_scores
from aedetect.thresholds import Threshold, choose_threshold


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


def select_threshold(det, df, split: Split, config: TrainConfig, schema: Schema = CREDITCARD):
    """Apply the configured rule: label-free rules see validation normals, labelled rules see
    only the selection set (never the test set)."""
    rule = config.threshold_rule
    if rule == "fixed":
        return choose_threshold("fixed", value=config.threshold_value if
                                config.threshold_value is not None else 10.0)
    if rule == "normal_percentile":
        return det.threshold  # fit() set it from the validation normals
    sel = df.iloc[split.selection]
    y = sel[schema.label].to_numpy()
    return choose_threshold(
        rule, scores=det.score_samples(sel[list(schema.features)]), y=y,
        precision=config.min_precision,
        source=f"selection set ({int(y.sum())} anomalies, {int((y == 0).sum())} normals)",
    )


def evaluate_detector(det, df, rows: np.ndarray | None, schema: Schema = CREDITCARD,
                      *, threshold: Threshold | None = None) -> dict:
    """Metrics of `det` on `df.iloc[rows]` (all rows when None) at its own threshold."""
    part = df if rows is None else df.iloc[rows]
    x = part[list(schema.features)]
    t = threshold or det.threshold
    mse = det.feature_errors(x).mean(axis=1)
    scores = mse if det.score == "mse" else det.score_samples(x)
    metrics = evaluate_scores(part[schema.label].to_numpy(), scores, t.value, mse=mse)
    metrics["score"] = det.score
    metrics["threshold_rule"] = t.rule
    metrics["threshold_source"] = t.source
    return metrics
