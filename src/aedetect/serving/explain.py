"""Explanations in the user's terms: per-feature contributions summed back to input columns.

A row's score is a sum of contributions of the preprocessed features (`aedetect.model.scores`); the
one-hot features of `merchant_category`, or the sin/cos of a timestamp, add up to one number per
input column, and the reason names the column with its value: `merchant_category='jewelry'
(unseen)`, `amount=1520.5`, `device=(missing)`.
"""

from __future__ import annotations

import numpy as np

from aedetect.serving.runtime import top_features


def top_columns(preprocessor, X, contributions: np.ndarray, k: int, *, arrow: bool = False):
    """The `k` input columns contributing most to each row's score.

    Returns (columns [n, k], contributions [n, k], reasons [n, k]); row sums over all columns
    equal the scores. `arrow`: the reasons as k Arrow string arrays (first reasons, second...),
    never Python strings: the batch scorer writes them as they are."""
    names, per_column = preprocessor.column_contributions(contributions)
    positions, values = top_features(per_column, None, k)
    columns = np.asarray(names, dtype=object)[positions]
    if not arrow:
        return columns, values, preprocessor.describe(X, positions, names)
    texts = preprocessor.reason_texts(X, positions, names)
    n = len(positions)
    return columns, values, [texts.slice(r * n, n) for r in range(positions.shape[1])]
