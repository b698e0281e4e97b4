"""The fast paths give the same results as the plain ones, and bad input is still named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
from aedetect.data.generate import generate_transactions
from aedetect.data.schema import validate_frame
from aedetect.errors import DataError
from aedetect.model.fitloop import array_epochs
from aedetect.model.preprocessing import Preprocessor


def _epoch(epochs, per_call=1) -> list[np.ndarray]:
    stacks = list(epochs(per_call))
    assert all(s.ndim == 3 and len(s) <= per_call for s in stacks)
    return [batch for s in stacks for batch in s]


def test_array_epochs_cover_every_row_each_pass_in_full_batches_and_reshuffle():
    x = np.arange(103 * 2, dtype="float32").reshape(103, 2)
    epochs = array_epochs(x, 10, passes=2, seed=3)
    first, second = _epoch(epochs), _epoch(epochs, per_call=4)
    assert [len(b) for b in first] == [10] * 22  # 2 passes of 11 batches, the last topped up
    for batches in (first, second):
        for one_pass in (batches[:11], batches[11:]):
            rows = np.concatenate(one_pass)
            np.testing.assert_array_equal(np.sort(rows[:103, 0]), x[:, 0])  # every row once,
            np.testing.assert_array_equal(rows[103:], rows[:7])  # then the pass's first 7 again
            np.testing.assert_array_equal(rows[:, 1], rows[:, 0] + 1)  # rows stay whole
    assert not np.array_equal(np.concatenate(first[:11]), np.concatenate(first[11:]))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    assert not np.array_equal(np.concatenate(first[:11])[:103], x)


def test_fewer_rows_than_a_batch_make_one_batch_of_every_row():
    x = np.arange(7, dtype="float32").reshape(7, 1)
    (batch,) = _epoch(array_epochs(x, 32, passes=1, seed=0), per_call=64)
    np.testing.assert_array_equal(np.sort(batch[:, 0]), x[:, 0])


def test_array_epochs_same_seed_same_order_whatever_the_steps_per_call():
    x = np.arange(500, dtype="float32").reshape(250, 2)
    a = np.concatenate(_epoch(array_epochs(x, 32, 1, seed=1)))
    b = np.concatenate(_epoch(array_epochs(x, 32, 1, seed=1), per_call=3))
    c = np.concatenate(_epoch(array_epochs(x, 32, 1, seed=2)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _reference_transform(p: Preprocessor, x: np.ndarray) -> np.ndarray:
    """The formula written out column by column, in float64 (independent of the block code)."""
    periodic = dict(p.periodic_columns)
    cols = []
    for j, c in enumerate(p.feature_names):
        v = x[:, j].astype("float64")
        if c in periodic:
            cols += [np.sin(2 * np.pi / periodic[c] * v), np.cos(2 * np.pi / periodic[c] * v)]
        elif c in p.log_columns:
            cols.append(np.log1p(np.maximum(v, 0.0)))
        else:
            cols.append(v)
    return ((np.stack(cols, axis=1) - p.mean_) / p.scale_).astype("float32")


def test_vectorised_transform_matches_the_column_by_column_formula_and_tf():
    x = generate_transactions(3000, 0.02, seed=4)[list(CREDITCARD.features)].to_numpy()
    p = Preprocessor(CREDITCARD.features, LOG_COLUMNS, PERIODIC_COLUMNS).fit(x)
    got = p.transform(x)
    assert got.dtype == np.float32 and got.shape == (3000, 31)
    np.testing.assert_allclose(got, _reference_transform(p, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, p.transform_tf(x).numpy(), rtol=1e-4, atol=1e-4)


def test_transform_without_special_columns():
    x = np.random.default_rng(0).normal(size=(50, 4))
    p = Preprocessor(["a", "b", "c", "d"]).fit(x)
    np.testing.assert_allclose(p.transform(x), _reference_transform(p, x), atol=1e-6)


def _frame(n=20) -> pd.DataFrame:
    return generate_transactions(n, 0.1, seed=1)


def test_validate_fast_path_returns_float64_features():
    df = _frame()
    df["Time"] = df["Time"].astype("int64")
    out = validate_frame(df, CREDITCARD)
    assert all(out[c].dtype == "float64" for c in CREDITCARD.features)
    np.testing.assert_array_equal(out["Time"].to_numpy(), df["Time"].to_numpy().astype("float64"))
    assert df["Time"].dtype == "int64"  # the input is not changed


@pytest.mark.parametrize(("value", "match"), [
    (np.nan, r"column 'V3', row 5: empty value"),
    (np.inf, r"column 'V3', row 5: value inf is not finite"),
])
def test_validate_still_names_a_bad_value_in_a_numeric_column(value, match):
    df = _frame()
    df.loc[4, "V3"] = value
    with pytest.raises(DataError, match=match):
        validate_frame(df, CREDITCARD, source="f.csv")


def test_validate_nullable_integer_with_missing_value():
    df = _frame()
    df["Time"] = pd.array([None, *range(1, len(df))], dtype="Int64")
    with pytest.raises(DataError, match=r"column 'Time', row 1: empty value"):
        validate_frame(df, CREDITCARD)
