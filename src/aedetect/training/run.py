"""A training run, as `aedetect train` starts one and as a Python user can: check the model
folder before training (which can take an hour), train from a table (from scratch or from a
parent model) or from a folder of shards, describe the run in metadata, save the folder with it.

Nothing here prints: the functions return a `TrainingRun` and the CLI prints from it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from aedetect.data.schema import DatasetSchema
from aedetect.data.splits import Split
from aedetect.errors import DataError
from aedetect.files import check_output
from aedetect.model.thresholds import get_rule
from aedetect.training.config import TrainConfig
from aedetect.training.workflow import (
    RULES_WITHOUT_ROWS,
    TrainResult,
    flagged_share_warning,
    new_detector,
    threshold_from_fit,
    train_detector,
)


@dataclass
class TrainingRun:
    """A trained detector and the metadata its model folder carries (`save` writes both)."""

    detector: Any  # an AutoencoderDetector, or a HybridDetector wrapping one
    config: TrainConfig
    metadata: dict = field(default_factory=dict)
    split: Split | None = None  # None when trained from a folder of shards
    out: Path | None = None  # the model folder, once saved
    warnings: list[str] = field(default_factory=list)  # about the data (`TrainResult.warnings`)

    @property
    def comparison(self) -> dict | None:
        """After a warm start: the parent and the new model on the new test rows."""
        return self.metadata.get("warm_start")

    @property
    def test(self) -> dict | None:
        """With `test_data`: the file, its metrics and the flagged-share warning (or None)."""
        return self.metadata.get("test_data")

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        self.out = self.detector.save(path, metadata=self.metadata, overwrite=overwrite)
        return self.out


@dataclass(frozen=True)
class Parent:
    """A model folder to continue training from (a warm start), loaded."""

    folder: Path
    detector: Any

    @property
    def schema(self):
        """The parent's columns and types: the new data is read with them, not re-inferred."""
        return self.detector.dataset_schema


def load_parent(folder) -> Parent:
    """A parent model folder (a path or an opened `ModelFolder`), loaded."""
    from aedetect.model.hybrid import open_model
    from aedetect.store.folder import open_folder

    folder = open_folder(folder)
    return Parent(folder.path, open_model(folder))


def check_before_training(out: str | os.PathLike | None, overwrite: bool = False,
                          warm_start: str | os.PathLike | None = None):
    """Refuse, before the data loads, a model folder that exists (without `overwrite`) or cannot
    be written, and a parent folder that is not a model folder. Returns the parent's verified
    folder (`ModelFolder`, to load without reading it again), or None."""
    if out is not None:  # the same rule as every output (aedetect.files)
        check_output(out, overwrite=overwrite, folder=True, what="model folder")
    if warm_start is None:
        return None
    from aedetect.store.folder import open_folder

    return open_folder(warm_start)


def run_metadata(result: TrainResult, data_file: str | os.PathLike | None = None) -> dict:
    """What the model folder records of its training: data, split, seed and settings."""
    meta = {"data_file": str(data_file)} if data_file is not None else {}
    return {**meta, "data_fingerprint": result.data_fingerprint, "protocol": result.split.protocol,
            "seed": result.config.seed, "split_sizes": result.split.sizes(),
            "config": result.config.model_dump()}


def train_from_table(df: pd.DataFrame, config: TrainConfig, schema=None, *,
                     data_file: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                     overwrite: bool = False, warm_start: Parent | str | os.PathLike | None = None,
                     callbacks=(), test_data: pd.DataFrame | None = None,
                     test_file: str | os.PathLike | None = None, labels: dict | None = None,
                     history_state=None, history_source: str = "the history state") -> TrainingRun:
    """Train on `df` (`train_detector`), describe the run in its metadata, save it to `out`.

    `schema`: the table's (default with `warm_start`: the parent's).
    `warm_start`: a parent model folder (or `load_parent` of one); the new model is compared
    with it on the new split's test rows, in `metadata["warm_start"]`.
    `test_data`: a labelled table of a later period (`test_file`, its name) read with `schema`:
    `df`'s split trains, validates and chooses the threshold, and the model is evaluated on every
    row of `test_data` (`metadata["test_data"]`, `TrainingRun.test`); `df` keeps no test part
    then (the time protocol: its earliest 90% train, its latest 10% choose).
    `labels`: what `aedetect.data.labels.join_labels` joined into `df` (its `summary`), kept as
    `metadata["labels"]`. `history_state`: the entity history before `df` (`HistoryState`;
    `history_source` names it), which `df`'s continues from.
    """
    check_before_training(out, overwrite)
    if warm_start is not None and not isinstance(warm_start, Parent):
        warm_start = load_parent(warm_start)
    if schema is None and warm_start is not None:
        schema = warm_start.schema
    if test_data is not None:  # before training, which can take an hour
        check_test_data(test_data, schema, test_file)
        config = config.model_copy(update={"test_share": 0.0})  # the file is the test: no test window
    # The tfrecord pipeline's shards live here; removed however training ends (Ctrl-C included).
    with tempfile.TemporaryDirectory(prefix="aedetect-shards-") as work:
        result = train_detector(df, config, schema, callbacks=callbacks, work_dir=work,
                                warm_start=warm_start.detector if warm_start is not None else None,
                                source=str(data_file) if data_file is not None else "the data",
                                history_state=history_state, history_source=history_source,
                                test_elsewhere=None if test_data is None else str(test_file or "the test data"))
    run = TrainingRun(result.detector, config, run_metadata(result, data_file), result.split,
                      warnings=list(result.warnings))
    if labels is not None:
        run.metadata["labels"] = labels
    if warm_start is not None:  # on the rows as trained on: their history continued from the parent's
        run.metadata["warm_start"] = compare_with_parent(warm_start.folder, run.detector, result.table,
                                                         result.split, schema)
    if test_data is not None:
        run.metadata["test_data"] = evaluate_test_data(run, test_data, schema, test_file)
    if out is not None:
        run.save(out, overwrite=overwrite)
    return run


def check_test_data(test_data: pd.DataFrame, schema, test_file=None) -> None:
    """Refuse test data that cannot be evaluated: no label column, or no row of either class."""
    name = str(test_file) if test_file is not None else "the test data"
    if schema is None or schema.label is None:
        raise DataError(f"{name}: a test file is evaluated, which needs labels, and the training "
                        "data's schema has no label column; pass --label-column")
    if schema.label not in test_data.columns:
        raise DataError(f"{name}: no label column {schema.label!r}; the test file is evaluated "
                        "with the training data's columns")
    y = test_data[schema.label].to_numpy()
    if not ((y == 1).any() and (y == 0).any()):
        raise DataError(f"{name}: {len(y):,} rows with {int((y == 1).sum()):,} anomalies and "
                        f"{int((y == 0).sum()):,} normals in column {schema.label!r}; evaluating "
                        "needs both")


def evaluate_test_data(run: TrainingRun, test_data: pd.DataFrame, schema, test_file=None) -> dict:
    """The trained model on every row of `test_data`: `evaluate_detector`'s metrics and the
    flagged-share warning (`flagged_share_warning`, or None)."""
    from aedetect.evaluation.metrics import evaluate_detector

    name = str(test_file) if test_file is not None else "the test data"
    metrics = evaluate_detector(run.detector, test_data, None, schema, seed=run.config.seed)
    metrics["protocol"], metrics["test_data"] = run.split.protocol, name
    warning = flagged_share_warning(run.detector, test_data, schema, name)
    return {"file": name, "rows": len(test_data), "metrics": metrics, "warning": warning}


def compare_with_parent(parent_dir: str | os.PathLike, det, df: pd.DataFrame, split: Split, schema) -> dict:
    """The parent and the warm-started model on the new split's test rows (for the time
    protocol, the most recent ones), as `compare_models` rows."""
    from aedetect.model.detector import load_detector
    from aedetect.monitoring.compare import compare_models
    from aedetect.monitoring.reference import load_reference

    if schema.label is None or not len(split.test):
        elsewhere = (getattr(getattr(det, "detector", det), "split_", None) or {}).get("test_data")
        why = ("the new data keeps no test rows (tested on another file: evaluate both models there)"
               if elsewhere else "the new data has no labelled test rows")
        return {"from": str(parent_dir), "compared_on": f"nothing: {why}"}
    part = df.iloc[split.test]
    # A fresh copy of the parent: the warm start trained the loaded one in place.
    rows = compare_models({f"before: {parent_dir}": (load_detector(parent_dir), load_reference(parent_dir)),
                           "after (warm start)": (det, det.reference_)},
                          part, part[schema.label].to_numpy(), skip=tuple(c for c in [schema.time] if c))
    what = f"the {len(part):,} test rows of the new data ({split.protocol} protocol)"
    return {"from": str(parent_dir), "compared_on": what, "models": rows}


def check_shard_rule(config: TrainConfig) -> None:
    """A folder of shards holds normal rows only, unsplit: it supports the rules that look at no
    rows after fit() (ValueError otherwise)."""
    if get_rule(config.threshold_rule).data not in RULES_WITHOUT_ROWS:
        raise ValueError(f"training from a shard folder supports --threshold-rule "
                         f"normal_percentile or fixed (no labelled selection set); got "
                         f"{config.threshold_rule!r}")


def train_from_shards(folder: str | os.PathLike, config: TrainConfig, schema: DatasetSchema, *,
                      out: str | os.PathLike | None = None, overwrite: bool = False,
                      callbacks=()) -> TrainingRun:
    """Train on a folder of Parquet/CSV shards of normal rows with the columns of `schema`,
    streamed (`fit_from_shards`); save it to `out`."""
    from aedetect.data.shards import fit_from_shards

    check_shard_rule(config)
    check_before_training(out, overwrite)
    det, data = fit_from_shards(new_detector(config, schema), folder, callbacks=callbacks)
    det.threshold = threshold_from_fit(det, config)
    run = TrainingRun(det, config, {"data_folder": str(folder), "shards": len(data.files),
                                    "rows_in_shards": data.n_rows, "seed": config.seed,
                                    "config": config.model_dump()})
    if out is not None:
        run.save(out, overwrite=overwrite)
    return run
