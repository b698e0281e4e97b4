import numpy as np
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.data.schema import validate_frame
from aedetect.data.splits import guide_split, make_split, time_split


def test_generated_data_has_schema_and_known_anomaly_share():
    df = generate_transactions(5_000, fraud_rate=0.03, seed=3)
    validate_frame(df, CREDITCARD)  # raises if the schema is off
    assert list(df.columns) == [*CREDITCARD.features, "Class"]
    assert int(df["Class"].sum()) == 150
    assert df["Time"].is_monotonic_increasing
    assert (df["Amount"] >= 0).all()
    assert generate_transactions(5_000, 0.03, seed=3).equals(df)
    assert not generate_transactions(5_000, 0.03, seed=4).equals(df)


@pytest.mark.parametrize("rows, rate", [(5, 0.01), (100, 0.5), (100, -0.1)])
def test_generate_rejects_bad_arguments(rows, rate):
    with pytest.raises(ValueError, match="must be"):
        generate_transactions(rows, rate)


def _ulb_like_labels(seed=0):
    y = np.zeros(284_807, dtype=int)
    y[np.random.default_rng(seed).choice(len(y), 492, replace=False)] = 1
    return y


def test_guide_split_reproduces_the_guides_counts():
    y = _ulb_like_labels()
    s = guide_split(y, seed=0)
    assert len(s.test) == 34_000 and y[s.test].sum() == 480
    assert len(s.selection) == 240 and y[s.selection].sum() == 12  # 5% anomalies
    assert y[s.train].sum() == 0 and y[s.validation].sum() == 0  # no anomaly is trained on
    parts = [s.train, s.validation, s.selection, s.test]
    assert sum(len(p) for p in parts) == len(y)
    assert len(np.unique(np.concatenate(parts))) == len(y)  # disjoint, covers all rows
    assert abs(len(s.validation) / (len(s.validation) + len(s.train)) - 0.1) < 0.001


def test_guide_split_is_seeded():
    y = _ulb_like_labels()
    a, b, c = guide_split(y, 1), guide_split(y, 1), guide_split(y, 2)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.test, c.test)


def test_time_split_trains_on_earlier_rows_only():
    df = generate_transactions(4_000, 0.02, seed=1)
    s = time_split(df["Time"].to_numpy(), df["Class"].to_numpy(), seed=0)
    t, y = df["Time"].to_numpy(), df["Class"].to_numpy()
    early = max(t[s.train].max(), t[s.validation].max())
    assert early <= t[s.selection].min() and t[s.selection].max() <= t[s.test].min()
    assert y[s.train].sum() == 0 and y[s.validation].sum() == 0
    assert not set(s.train) & set(s.validation)
    # validation normals are a random tenth of the early period's normals, not a later window
    assert abs(len(s.validation) / (len(s.train) + len(s.validation)) - 0.1) < 0.01
    assert t[s.validation].min() < np.median(t[s.train]) < t[s.validation].max()
    assert len(s.test) == 800 and len(s.selection) == 400
    other = time_split(df["Time"].to_numpy(), y, seed=1)
    assert np.array_equal(other.test, s.test) and not np.array_equal(other.validation, s.validation)


def test_make_split_rejects_unknown_protocol():
    with pytest.raises(ValueError, match="protocol must be one of"):
        make_split("random", np.zeros(10))


def test_the_time_protocols_test_window_is_a_share_and_can_be_none():
    """`test_share` (`TrainConfig.test_share`, 0 with `train --test-data`): the default cuts the
    same rows as ever (70 / 10 / 20, row counts included, at sizes where 0.7 rounds either way),
    and 0 trains on the earliest 90% and chooses on the latest 10%, testing nothing."""
    from aedetect.data.splits import make_split, time_split

    for n in (15, 25, 35, 101, 1_000):
        t, y = np.arange(n, dtype="float64"), (np.arange(n) % 7 == 0).astype(int)
        default, old = make_split("time", y, t, seed=1), time_split(t, y, seed=1)
        for part in ("train", "validation", "selection", "test"):
            assert np.array_equal(getattr(default, part), getattr(old, part)), (n, part)
        none = make_split("time", y, t, seed=1, test_share=0.0)
        cut = round(0.9 * n)
        assert len(none.test) == 0 and np.array_equal(none.selection, np.arange(cut, n))  # the latest choose
        learn = np.concatenate([none.train, none.validation, none.selection])
        assert len(learn) == n - int(y[:cut].sum())  # every row used, less the earlier anomalies
