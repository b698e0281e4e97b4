"""Explanations in the user's terms: per-feature contributions summed back to input columns.

A row's score is a sum of contributions of the preprocessed features (`aedetect.model.scores`); the
one-hot features of `merchant_category`, or the sin/cos of a timestamp, add up to one number per
input column, and the reason names the column with its value: `merchant_category='jewelry'
(unseen)`, `amount=1520.5`, `device=(missing)`.
"""

from __future__ import annotations

import numpy as np

from aedetect.serving.runtime import top_features


def top_columns(preprocessor, X, contributions: np.ndarray, k: int):
    """The `k` input columns contributing most to each row's score.

    Returns (columns [n, k], contributions [n, k], reasons [n, k]); row sums over all columns
    equal the scores."""
    names, per_column = preprocessor.column_contributions(contributions)
    positions, values = top_features(per_column, np.arange(len(names)), k)
    positions = positions.astype(np.int64)
    columns = np.asarray(names, dtype=object)[positions]
    return columns, values, preprocessor.describe(X, positions, names)
