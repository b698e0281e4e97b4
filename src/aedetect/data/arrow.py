"""Parsing Arrow record batches into what a model scores, with a reason for every bad row.

One reading of a batch for every path that streams Arrow data: batch scoring of files, training
from shard folders, and Spark workers. A value is good when the model can score it; otherwise
its row gets the reason (column, value, what was expected), and no row is dropped silently.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aedetect.data.schema import MAX_ABS_VALUE, as_seconds, column_problems


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
        try:  # fast path: a clean column casts in one vectorised call
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
    """The feature columns as a DataFrame (numbers parsed, categories as given) and per-row
    reasons (None = good row), for a model with a dataset schema. A missing value is good where
    the model imputes it; a category never seen in training is good (it is scored)."""
    import pandas as pd

    n = batch.num_rows
    reasons = np.full(n, None, dtype=object)
    frame = {}
    lo, hi = preprocessor.limits()
    for j, b in enumerate(preprocessor.blocks):
        col = b["column"]
        raw = batch.column(col).to_pandas()
        if b["kind"] in ("onehot", "frequency"):
            frame[col] = raw
            continue
        if b.get("datetime"):
            try:
                v = np.asarray(as_seconds(raw, col), dtype="float64")
            except Exception:  # noqa: BLE001 - find the bad rows one by one below
                v = np.array([_seconds_or_nan(x) for x in raw], dtype="float64")
            why = np.full(n, None, dtype=object)
            for r in np.flatnonzero(np.isnan(v)):  # an empty cell, or text that is no date/time
                x = raw.iloc[r]
                why[r] = (f"column {col!r}: empty value" if pd.isna(x) else
                          f"column {col!r}: value {x!r} is not a date/time")
        else:
            v, why = column_problems(raw, col)
            with np.errstate(invalid="ignore"):  # in range, but too far from the training mean
                far = (why == None) & ((v < lo[j]) | (v > hi[j]))  # noqa: E711
            for r in np.flatnonzero(far):
                why[r] = f"column {col!r}: {preprocessor.value_problem(j, v[r])}"
        if b.get("indicator"):  # missing in training too: imputed, not a bad row
            why[raw.isna().to_numpy()] = None
        first = (why != None) & (reasons == None)  # noqa: E711 (element-wise on object arrays)
        reasons[first] = why[first]
        frame[col] = pd.Series(v)
    return pd.DataFrame(frame), reasons


def _seconds_or_nan(x) -> float:
    import pandas as pd

    try:
        return float(as_seconds(pd.Series([x]))[0])
    except Exception:  # noqa: BLE001
        return float("nan")
