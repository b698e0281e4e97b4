"""Explanations in the user's terms: per-feature contributions summed back to input columns.

A row's score is a sum of contributions of the preprocessed features (`aedetect.model.scores`); the
one-hot features of `merchant_category`, or the sin/cos of a timestamp, add up to one number per
input column, and the reason names the column with its value: `merchant_category='jewelry'
(unseen)`, `amount=1520.5`, `device=(missing)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from aedetect.serving.runtime import top_features, usable_cores

PARALLEL_ROWS = 10_000  # rows per part, at least, when the reasons are built in parts


def top_columns(preprocessor, X, contributions: np.ndarray, k: int, *, arrow: bool = False):
    """The `k` input columns contributing most to each row's score.

    Returns (columns [n, k], contributions [n, k], reasons [n, k]); row sums over all columns
    equal the scores. `arrow`: the reasons as k Arrow string arrays (first reasons, second...),
    never Python strings: the batch scorer writes them as they are, built in parts of at
    least `PARALLEL_ROWS` rows, one per core (NumPy and Arrow release the GIL)."""
    n = len(contributions)
    parts = min(usable_cores(), n // PARALLEL_ROWS) if arrow else 1
    if parts < 2:
        return _top_columns(preprocessor, X, contributions, k, arrow=arrow)
    import pyarrow as pa

    bounds = np.linspace(0, n, parts + 1).astype(int)
    with ThreadPoolExecutor(parts) as pool:
        pieces = list(pool.map(lambda a, b: _top_columns(preprocessor, _row_slice(X, a, b), contributions[a:b],
                                                         k, arrow=True), bounds[:-1], bounds[1:]))
    return (np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces]),
            [pa.concat_arrays([p[2][r] for p in pieces]) for r in range(len(pieces[0][2]))])


def _row_slice(X, a: int, b: int):
    """Rows a..b of a table, a mapping of columns or a matrix."""
    if hasattr(X, "iloc"):
        return X.iloc[a:b]
    if isinstance(X, Mapping):
        return {c: v[a:b] for c, v in X.items()}
    return X[a:b]


def _top_columns(preprocessor, X, contributions: np.ndarray, k: int, *, arrow: bool):
    names, per_column = preprocessor.column_contributions(contributions)
    positions, values = top_features(per_column, None, k)
    columns = np.asarray(names, dtype=object)[positions]
    if not arrow:
        return columns, values, preprocessor.describe(X, positions, names)
    texts = preprocessor.reason_texts(X, positions, names)
    n = len(positions)
    return columns, values, [texts.slice(r * n, n) for r in range(positions.shape[1])]
