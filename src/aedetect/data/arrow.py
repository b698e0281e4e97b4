"""Parsing Arrow record batches into what a model scores, with a reason for every bad row.

One reading of a batch for every path that streams Arrow data: batch scoring of files, training
from shard folders, and Spark workers. A value is good when the model can score it; otherwise
its row gets the reason (column, value, what was expected), and no row is dropped silently.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aedetect.data.schema import column_problems
from aedetect.data.values import MAX_ABS_VALUE, clean_numbers


def parse_features(batch: pa.RecordBatch, features: list[str], preprocessor=None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Float64 feature matrix and per-row reasons (None = good row), vectorised per column.

    A value is good when it is a finite number within the range the model can score
    (`Preprocessor.limits`); anything else makes its row bad, with the reason.
    """
    n = batch.num_rows
    x = np.empty((n, len(features)))
    reasons = np.full(n, None, dtype=object)
    if preprocessor is not None:
        lo, hi = preprocessor.limits()
    else:
        lo, hi = np.full(len(features), -MAX_ABS_VALUE), np.full(len(features), MAX_ABS_VALUE)
    for j, col in enumerate(features):
        arr = batch.column(col)
        try:  # fast path: a clean column casts in one vectorised call (a boolean is no number)
            if pa.types.is_boolean(arr.type):
                raise pa.ArrowInvalid("booleans")
            values = pc.cast(arr, pa.float64())
            v = values.to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                clean = values.null_count == 0 and bool(((v >= lo[j]) & (v <= hi[j])).all())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            clean = False
        if not clean:
            v, why = column_problems(arr.to_pandas(), col)
            first = (why != None) & (reasons == None)  # noqa: E711 (element-wise on object arrays)
            reasons[first] = why[first]
        x[:, j] = v
    if preprocessor is not None:  # in-range raw values can still be too far from the training mean
        unchecked = np.flatnonzero(reasons == None)  # noqa: E711
        far = preprocessor.problems(x[unchecked])
        reasons[unchecked] = far
    return x, reasons


def parse_table(batch: pa.RecordBatch, preprocessor) -> tuple:
    """The feature columns as a DataFrame (numbers, booleans and times read by their type,
    categories as given) and per-row reasons (None = good row), for a model with a dataset
    schema. A missing value is good where the model imputes it; a category never seen in
    training is good (it is scored)."""
    import pandas as pd

    n = batch.num_rows
    reasons = np.full(n, None, dtype=object)
    frame = {}
    lo, hi = preprocessor.limits()
    for j, b in enumerate(preprocessor.blocks):
        col = b["column"]
        if b.get("history"):  # computed from other rows, not read: `aedetect.data.history.attach_history`
            continue
        raw = batch.column(col)
        if b["kind"] in ("onehot", "frequency"):
            frame[col] = raw.to_pandas()
            continue
        v = _in_range_numbers(raw, lo[j], hi[j]) if not (b.get("datetime") or b.get("boolean")) else None
        if v is not None:  # the usual column: plain numbers, every one in range
            frame[col] = v
            continue
        v, problems = preprocessor.read_input(j, raw)  # Arrow as read: clean numbers skip pandas
        bad = problems != None  # noqa: E711 (element-wise on object arrays)
        if not bad.any() and not b.get("datetime"):  # the usual column: every value good, in range
            with np.errstate(invalid="ignore"):
                fine = not ((v < lo[j]) | (v > hi[j])).any()
            if fine and (b.get("indicator") or not np.isnan(v).any()):
                frame[col] = v
                continue
        why = np.full(n, None, dtype=object)
        why[bad] = [f"column {col!r}: {p}" for p in problems[bad]]
        if not b.get("datetime"):
            with np.errstate(invalid="ignore"):  # in range, but beyond what the model can score
                far = ~bad & ((v < lo[j]) | (v > hi[j]))
            for r in np.flatnonzero(far):
                why[r] = f"column {col!r}: {preprocessor.value_problem(j, v[r])}"
        if not b.get("indicator"):  # a gap where the training rows had none
            why[np.isnan(v) & ~bad] = f"column {col!r}: empty value"
        first = (why != None) & (reasons == None)  # noqa: E711 (element-wise on object arrays)
        reasons[first] = why[first]
        frame[col] = v
    return pd.DataFrame(frame), reasons


def parse_rows(batch: pa.RecordBatch | pa.Table, features: list[str], preprocessor=None, *,
               table: bool = False) -> tuple:
    """What a model scores from `batch` and per-row reasons (None = good row): `parse_table`
    for a model with a dataset schema (`table`), else `parse_features`. The one reading of rows
    for the batch scorer and the drift monitor, so both score the same rows the same way."""
    if table:
        return parse_table(batch, preprocessor)
    return parse_features(batch, features, preprocessor)


def _in_range_numbers(arr, lo: float, hi: float) -> np.ndarray | None:
    """Float64 values of a column whose every value is a plain number within [lo, hi], read
    the way `read_numbers` reads a clean column (`values.clean_numbers`: one Arrow cast), else
    None: a gap, an out-of-range value or text that is no number goes through
    `Preprocessor.read_input`, which names each problem. A clean column so skips that path's
    per-row problem arrays of Python objects (a fifth of a chunk's parsing)."""
    v = clean_numbers(arr)
    if v is None:
        return None
    with np.errstate(invalid="ignore"):  # NaN (a gap) is outside any range
        return v if bool(np.logical_and(v >= lo, v <= hi).all()) else None


def frame_table(df, columns: list[str]) -> pa.Table:
    """`columns` of a DataFrame (as `aedetect.data.io.read_raw` returns one) as an Arrow table for
    `parse_rows`; a column Arrow cannot type as it is (mixed Python objects) goes as text, so
    its values are checked and named like a CSV's."""
    arrays = {}
    for c in columns:
        try:
            arrays[c] = pa.array(df[c], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if _missing(v) else str(v) for v in df[c]], pa.string())
    return pa.table(arrays)


def _missing(v) -> bool:
    try:
        return bool(v is None or v != v)
    except (TypeError, ValueError):  # an array-like value: present
        return False

