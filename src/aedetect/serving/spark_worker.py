"""The worker side of Spark scoring: find the shipped model, verify it, load it once, score batches.

This module is imported inside Spark's Python workers, never pickled: the model cache lives here
(a cache in `__main__` would be pickled, empty, into every task) and survives from task to task
and job to job while Spark reuses the worker (`spark.python.worker.reuse`, on by default). It
imports no pyspark.sql and no TensorFlow at import time; the thread limits are set before the
model is first loaded (the TensorFlow-free runtime, `aedetect.serving.runtime.load_scorer`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from aedetect.errors import ArtifactError

if TYPE_CHECKING:
    from aedetect.store.folder import ModelFolder

THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# What a worker imports to score (this module, the NumPy runtime, the model folder's checks,
# Arrow parsing, entity history), and the packages under them: the driver tries these on one
# worker before any job (`aedetect.serving.spark.check_workers`).
IMPORTS = ("aedetect", "numpy", "pyarrow", "pandas", "pydantic", "aedetect.serving.spark_worker",
           "aedetect.serving.runtime", "aedetect.store.folder", "aedetect.data.arrow", "aedetect.data.history")
# and what a label-aware model's supervised head needs beside them; TensorFlow too (the `train`
# extra) for a head that reads a code layer only Keras computed (`ShippedModel.needs_keras`)
LABEL_AWARE_IMPORTS = ("sklearn", "skops")


@dataclass(frozen=True)
class HistoryInputs:
    """A model's entity history (`aedetect.data.history`): the columns it is computed from, how
    the driver checks their types, and the feature names, entity by entity."""

    time: str
    entities: tuple[str, ...]
    amount: str | None
    kinds: tuple[str, ...]                   # per input column: "datetime", "number" or "category"
    features: tuple[tuple[str, ...], ...]    # per entity, its history feature names
    label: str | None = None                 # label-based risk: the label column, read when present

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.time, *self.entities, *([self.amount] if self.amount else [])]))


@dataclass(frozen=True)
class ShippedModel:
    """What a task needs to find and check the model folder shipped with `addArtifacts`."""

    archive: str        # file name of the archive; Spark unpacks it into a folder of that name
    digest: str         # sha256 of manifest.json, which holds the sha256 of every other file
    features: tuple[str, ...]
    feature_names_out: tuple[str, ...]
    # per feature, for a model with a dataset schema: "number", "category" or "datetime";
    # empty for a numbers-only model
    input_kinds: tuple[str, ...] = ()
    history: HistoryInputs | None = None  # entity history features, computed before scoring
    # a label-aware folder: scoring loads its supervised head (scikit-learn) on the workers over
    # the NumPy runtime, or over Keras where `needs_keras` (`runtime.needs_tensorflow`); its
    # history needs neither
    label_aware: bool = False
    needs_keras: bool = False
    # a history state to continue from instead of the model's own (`aedetect score
    # --history-state`'s file), shipped as an archive of its own: its name and sha256
    history_state: str | None = None
    history_state_digest: str | None = None


_lock = threading.Lock()
_models: dict[str, object] = {}
_loads = 0


def manifest_digest(model_dir: str | os.PathLike) -> str:
    return hashlib.sha256((Path(model_dir) / "manifest.json").read_bytes()).hexdigest()


def load_model(model_dir: str | os.PathLike | ModelFolder, *, scoring: bool = True):
    """The one place the worker builds a model: the TensorFlow-free runtime (NumPy), so a
    Python worker never pays TensorFlow's start-up time and memory for an autoencoder.

    The returned object has `score_matrix(x) -> (scores, contributions)` for a checked float
    matrix and `threshold_` (`aedetect.serving.runtime.open_scorer`). A label-aware folder is the
    `HybridDetector` for `scoring` (its head needs scikit-learn on the worker, and TensorFlow
    only where `aedetect score` needs it: `runtime.needs_tensorflow`); for its history alone
    (`scoring` False), the schema and history state only.
    """
    from aedetect.serving.runtime import open_scorer
    from aedetect.store.folder import open_folder, read_history

    folder = open_folder(model_dir)
    if scoring or not folder.is_hybrid:
        return open_scorer(folder)
    from types import SimpleNamespace

    from aedetect.data.schema import DatasetSchema

    schema = DatasetSchema.model_validate(folder.manifest.detector_params["schema"])
    return SimpleNamespace(schema=schema, history_state_=read_history(folder))


def limit_threads(n: int) -> None:
    """Keep the worker to its task's cores (`spark.task.cpus`) instead of one thread per core.

    TensorFlow reads its thread counts once, when it starts, so this must run before the first
    import; BLAS pools that are already running are capped through threadpoolctl.
    """
    n = max(1, int(n))
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except Exception:  # noqa: BLE001 - a missing or odd BLAS only costs speed
        pass


def _task_cpus() -> int:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        return int(ctx.cpus()) if ctx is not None else 1
    except Exception:  # noqa: BLE001 - outside a task (tests, a plain process)
        return 1


def _unpacked(archive: str, marker: str = "manifest.json") -> Path:
    """Where Spark unpacked the archive (holding the file `marker`) on this worker (classic:
    SparkFiles root; Connect: the session's working folder)."""
    candidates = []
    try:
        from pyspark import SparkFiles

        candidates.append(Path(SparkFiles.getRootDirectory()) / archive)
    except Exception:  # noqa: BLE001 - no SparkFiles outside a worker
        pass
    candidates.append(Path.cwd() / archive)
    for path in candidates:
        if (path / marker).is_file():
            return path
    raise ArtifactError(f"archive {archive!r} is not on this worker (looked in "
                        f"{', '.join(str(p) for p in candidates)}); was it added with addArtifacts?")


def model_for(shipped: ShippedModel, model_dir: str | os.PathLike | None = None, *, scoring: bool = True):
    """The verified model for `shipped`, loaded at most once per Python worker (a label-aware
    folder's history alone, `scoring` False, apart from its scorer: `load_model`)."""
    global _loads
    key = shipped.digest if scoring or not shipped.label_aware else shipped.digest + ":history"
    with _lock:
        model = _models.get(key)
        if model is not None:
            return model
        if "tensorflow" not in sys.modules:
            limit_threads(_task_cpus())
        path = Path(model_dir) if model_dir is not None else _unpacked(shipped.archive)
        actual = manifest_digest(path)
        if actual != shipped.digest:
            raise ArtifactError(f"{path}: manifest sha256 {actual} does not match the model the "
                                f"driver checked ({shipped.digest}); refusing to score with it")
        from aedetect.store.folder import open_folder

        # every file's sha256 against the (now trusted) manifest, once
        model = load_model(open_folder(path), scoring=scoring)
        _models[key] = model
        _loads += 1
        return model


def worker_stats() -> dict:
    """This worker's process id, how many models it has loaded, which, and whether it has
    imported TensorFlow (only a label-aware head that reads Keras' code layer needs it)."""
    return {"pid": os.getpid(), "loads": _loads, "models": sorted(_models),
            "tensorflow": sys.modules.get("tensorflow") is not None}


# -- scoring ----------------------------------------------------------------------------------
def output_columns(top_k: int) -> list[tuple[str, pa.DataType]]:
    cols = [("score", pa.float64()), ("flag", pa.int8())]
    for i in range(1, top_k + 1):
        cols += [(f"top{i}_feature", pa.string()), (f"top{i}_contribution", pa.float64())]
    return cols + [("reason", pa.string())]


def score_arrays(model, shipped: ShippedModel, batch: pa.RecordBatch, top_k: int) -> dict:
    """Score the feature columns of `batch`; rows that cannot be scored get a null score and a
    reason instead of failing the task. Returns one Arrow array per output column."""
    from aedetect.data.arrow import parse_features, parse_table
    from aedetect.serving.runtime import top_features

    n = batch.num_rows
    table = getattr(model, "schema", None) is not None  # categories, datetimes, gaps: by type
    if table and shipped.history is not None:
        x, reasons = _with_history_columns(model, batch)
    elif table:
        x, reasons = parse_table(batch, model.preprocessor_)
    else:
        x, reasons = parse_features(batch, list(shipped.features), model.preprocessor_)
    good = np.asarray(reasons == None)  # noqa: E711 (element-wise on an object array)
    score = np.full(n, np.nan)
    contrib = np.zeros((n, len(shipped.feature_names_out)))
    if good.any():
        s, c = model.score_matrix(x[good].reset_index(drop=True) if table else x[good])
        score[good], contrib[good] = s, c
    out = {"score": pa.array(score, pa.float64(), mask=~good),
           "flag": pa.array((score > model.threshold_).astype("int8"), pa.int8(), mask=~good)}
    if top_k > 0:
        # contributions summed back to the input columns (Time, not Time:sin), as the batch scorer does
        columns, per_column = model.preprocessor_.column_contributions(contrib)
        names, values = top_features(per_column, columns, top_k)
        for i in range(names.shape[1]):
            out[f"top{i + 1}_feature"] = pa.array(names[:, i], pa.string(), mask=~good)
            out[f"top{i + 1}_contribution"] = pa.array(values[:, i], pa.float64(), mask=~good)
    out["reason"] = pa.array(reasons, pa.string())
    return out


def _with_history_columns(model, batch: pa.RecordBatch):
    """`parse_table` of the batch's own columns, then its history columns as computed (as the
    batch scorer adds them: never range-checked), and a reason for each good row without history."""
    from aedetect.data.arrow import parse_table
    from aedetect.data.history import attach_history

    x, reasons = parse_table(batch, model.preprocessor_)  # leaves the history columns out
    features = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in model.schema.computed_features
                if c in batch.schema.names}  # a label-aware model's head reads the label-based risk too
    return attach_history(x, reasons, features, model.schema)


def score_batches(batches, shipped: ShippedModel, id_columns: tuple[str, ...], top_k: int,
                  names: dict[str, str] | None = None):
    """The `mapInArrow` function: id columns, then the scoring columns, batch by batch.
    `names`: the columns' own names by the batch's names (where Spark could not carry them)."""
    model = None
    for batch in batches:
        if names:
            batch = pa.RecordBatch.from_arrays(batch.columns, names=[names.get(n, n) for n in batch.schema.names])
        if model is None:
            model = model_for(shipped)
        cols = {c: batch.column(c) for c in id_columns}
        cols.update(score_arrays(model, shipped, batch, top_k))
        yield pa.RecordBatch.from_pydict(cols)


def make_predict_fn(shipped: ShippedModel, top_k: int):
    """For `predict_batch_udf`: a function of the feature matrix (one column per feature, any
    dtype, NaN for nulls) that returns the scoring struct's fields as NumPy arrays."""
    model = model_for(shipped)
    names = list(shipped.features)

    def predict(x: np.ndarray) -> dict:
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        batch = pa.RecordBatch.from_arrays(
            [pa.array(x[:, j], from_pandas=True) for j in range(len(names))], names=names)
        arrays = score_arrays(model, shipped, batch, top_k)
        return {k: v.to_numpy(zero_copy_only=False) if k == "score" else
                np.asarray(v.to_pylist(), dtype=object) for k, v in arrays.items()}

    return predict


# -- entity history ---------------------------------------------------------------------------
# Helper columns of Spark's history pipeline (`aedetect.serving.spark.with_history`).
ROW = "_aedetect_row"        # the row's position in the DataFrame: ties in time go by it
TIME = "_aedetect_time"      # seconds, as `aedetect.data.history.table_inputs` reads the time column
AMOUNT = "_aedetect_amount"
LABEL = "_aedetect_label"    # 1.0 fraud, 0.0 normal, NaN not known (label-based risk)
START = "_aedetect_start"    # the first time of the rows with history: the state before it counts


def entity_column(i: int) -> str:
    """The helper column with entity `i`'s value as text (the value the history groups by)."""
    return f"_aedetect_entity{i}"


def history_inputs(batches, shipped: ShippedModel, names: tuple[str, ...], keep: bool, label: str | None = None):
    """The `mapInArrow` function: each row's time, entity values and amount as the history reads
    them (`table_inputs`: missing where empty or unreadable), after the batch's own columns
    (`keep`) or alone. `names`: the batch's columns holding `shipped.history.columns`; `label`:
    the one holding the label column (label-based risk), when the data has it."""
    from aedetect.data.history import table_inputs, table_labels

    h = shipped.history
    model = None
    for batch in batches:
        if model is None:
            model = model_for(shipped, scoring=False)
        columns = dict(zip(h.columns, names, strict=True)) | ({h.label: label} if label else {})
        frame = pa.table({c: batch.column(b) for c, b in columns.items()}).to_pandas()
        time, entities, amount = table_inputs(frame, model.schema)
        out = {c: batch.column(c) for c in batch.schema.names} if keep else {}
        out[TIME] = pa.array(np.asarray(time, dtype="float64"), pa.float64(), from_pandas=True)
        for i, e in enumerate(h.entities):
            out[entity_column(i)] = pa.array(entities[e].tolist(), pa.string())
        if h.amount:
            out[AMOUNT] = pa.array(np.asarray(amount, dtype="float64"), pa.float64(), from_pandas=True)
        if label:
            out[LABEL] = pa.array(table_labels(frame, model.schema), pa.float64(), from_pandas=True)
        yield pa.RecordBatch.from_pydict(out)


_state_lock = threading.Lock()
_states: dict[tuple, tuple] = {}  # (model, state digest, entity) -> (state, its rows by entity value)


def carried_state(shipped: ShippedModel):
    """The shipped history state (`ShippedModel.history_state`), checked against the sha256 the
    driver computed; None when the model's own state is used."""
    if shipped.history_state is None:
        return None
    from aedetect.data.history import HistoryState

    path = _unpacked(shipped.history_state, "history.parquet") / "history.parquet"
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != shipped.history_state_digest:
        raise ArtifactError(f"{path}: sha256 {actual} does not match the history state the driver checked "
                            f"({shipped.history_state_digest}); refusing to compute history from it")
    return HistoryState.from_parquet(path)


def _entity_state(model, shipped: ShippedModel, entity: str, value, start):
    """The state rows of one entity value before `start` (a `HistoryState`): the shipped
    state's, else the model's; the state is indexed by entity value once per worker."""
    from aedetect.data.history import HistoryState

    key = (shipped.digest, shipped.history_state_digest, entity)
    with _state_lock:
        cached = _states.get(key)
        if cached is None:
            state = carried_state(shipped) if shipped.history_state is not None else model.history_state_
            rows = state.rows if state is not None else HistoryState.empty(model.schema.history.entities).rows
            cached = _states[key] = (state, {k: g for k, g in rows.groupby(entity, sort=False)})
    state, index = cached
    began = state.start if state is not None and state.start is not None else start  # as `compute`
    rows = index.get(value)
    if rows is None:
        return HistoryState(HistoryState.empty(model.schema.history.entities).rows, began)
    if start is not None:  # as `compute` on the whole table: only the state before its first row
        rows = rows[rows["time"].to_numpy() < start]
    return HistoryState(rows.reset_index(drop=True), began)


def entity_history(table, shipped, entity, outputs):  # no annotations: applyInArrow reads them
    """The `applyInArrow` function for the rows of one value of `entity` (all of them, in one
    group; a pyarrow Table): the table with that entity's history features added as the
    columns `outputs` (Spark column names, without the dots of the features'), computed by
    `aedetect.data.history.compute` after the model's state rows of the value, the rows in
    their DataFrame order. A pair's new-counterparty flags depend only on the pair's rows, all
    of which are in the group, so the features equal those of the whole table."""
    import pandas as pd
    import pyarrow.compute as pc

    from aedetect.data.history import compute

    h = shipped.history
    i = h.entities.index(entity)
    table = table.take(pc.sort_indices(table, [(ROW, "ascending")]))
    model = model_for(shipped, scoring=False)
    value = table.column(entity_column(i))[0].as_py() if table.num_rows else None
    start = table.column(START)[0].as_py() if table.num_rows else None
    state = _entity_state(model, shipped, entity, value, start) if value is not None else None

    def floats(name):
        return pc.fill_null(table.column(name), np.nan).to_numpy().astype("float64")

    entities = {e: pd.Series(table.column(entity_column(j)).to_pylist(), dtype=object)
                for j, e in enumerate(h.entities)}
    amount = floats(AMOUNT) if h.amount else None
    labels = floats(LABEL) if LABEL in table.column_names else None
    # the state is already cut at the first row's time
    features, _ = compute(floats(TIME), entities, amount, model.schema.history.windows, state,
                          continues=True, labels=labels, **model.schema.history.options)
    for name, column in zip(h.features[i], outputs, strict=True):
        table = table.append_column(column, pa.array(features[name].to_numpy(), pa.float64(),
                                                   from_pandas=True))
    return table
