"""One schema class end to end: the credit-card schema is a DatasetSchema that reads the file
exactly as the numbers-only detector does, a detector stores its schema as one, and older
numbers-only model folders still know their columns."""

import numpy as np
import pandas as pd
import pytest

from aedetect.data import Schema
from aedetect.data.creditcard import (
    AMOUNT,
    CREDITCARD,
    FEATURES,
    LABEL,
    LOG_COLUMNS,
    PERIODIC_COLUMNS,
    TIME,
    numbers_model_schema,
)
from aedetect.data.schema import DatasetSchema
from aedetect.model.preprocessing import Preprocessor


def test_the_credit_card_schema_is_a_dataset_schema_of_its_columns():
    assert Schema is DatasetSchema and isinstance(CREDITCARD, DatasetSchema)
    assert CREDITCARD.features == [TIME, *(f"V{i}" for i in range(1, 29)), AMOUNT] == list(FEATURES)
    assert (CREDITCARD.label, CREDITCARD.time, CREDITCARD.missing) == (LABEL, TIME, "error")
    assert [c.name for c in CREDITCARD.feature_columns if c.log] == [AMOUNT]
    assert CREDITCARD.column(TIME).clock_periods == [86_400.0]


def test_the_credit_card_schema_preprocesses_exactly_as_the_numbers_only_form(frame):
    x = frame[list(FEATURES)]
    new = Preprocessor.from_schema(CREDITCARD)
    old = Preprocessor(FEATURES, ["Amount"], [("Time", 86_400.0)])
    assert new.blocks == old.blocks and new.missing == old.missing
    new.fit(x)
    old.fit(x.to_numpy())
    assert new.to_config() == old.to_config()
    np.testing.assert_array_equal(new.transform(x), old.transform(x.to_numpy()))


def test_a_table_of_numbers_reads_as_the_detector_parameters_say():
    """`of_numbers` is faithful to `log_columns`/`periodic_columns`: a time column without a
    period is a plain number, a periodic column that is not the time column is a clock."""
    names = ["t", "a", "clock"]
    s = DatasetSchema.of_numbers(names, ["a"], [("clock", 3600.0)], label="y", time="t")
    assert (s.features, s.label, s.time) == (names, "y", "t")
    assert Preprocessor.from_schema(s).blocks == Preprocessor(names, ["a"], [("clock", 3600.0)]).blocks


def test_a_numbers_only_model_gets_a_schema_of_its_columns():
    assert numbers_model_schema(FEATURES, LOG_COLUMNS, PERIODIC_COLUMNS) is CREDITCARD
    assert numbers_model_schema(list(FEATURES), ["Amount"], [["Time", 86400]]) is CREDITCARD
    other = numbers_model_schema(FEATURES)  # the same columns, read otherwise: not the credit-card model
    assert other.features == list(FEATURES) and other.label is None and other.time is None
    assert not [c for c in other.columns if c.log or c.clock_periods]


@pytest.fixture(scope="module")
def pair(frame):
    """The same small network trained from the schema and from the numbers-only parameters."""
    from aedetect.model.detector import AutoencoderDetector

    normals = frame[frame[LABEL] == 0]
    params = dict(hidden_units=(8, 4, 8), epochs=2, batch_size=128, seed=3, jit_compile=False)
    with_schema = AutoencoderDetector(schema=CREDITCARD, **params).fit(normals)
    numbers = AutoencoderDetector(log_columns=LOG_COLUMNS, periodic_columns=PERIODIC_COLUMNS,
                                  **params).fit(normals[list(FEATURES)])
    return with_schema, numbers


def test_a_detector_with_the_schema_trains_as_the_numbers_only_one(pair, frame):
    with_schema, numbers = pair
    assert with_schema.preprocessor_.to_config() == numbers.preprocessor_.to_config()
    x = frame[list(FEATURES)]
    np.testing.assert_allclose(with_schema.anomaly_score(frame), numbers.anomaly_score(x), rtol=1e-6)


def test_the_stored_schema_comes_back_as_a_dataset_schema(pair, tmp_path):
    from aedetect.model.detector import AutoencoderDetector
    from aedetect.serving.runtime import load_scorer

    with_schema, numbers = pair
    loaded = {}
    for det, name in ((with_schema, "schema"), (numbers, "numbers")):
        path = det.save(tmp_path / name)
        loaded[name] = AutoencoderDetector.load(path)
        # a numbers-only folder (as every folder before schemas were stored) on these columns
        # is the credit-card model: its label and time column are known
        assert loaded[name].dataset_schema == load_scorer(path).dataset_schema == CREDITCARD
    stored = loaded["schema"].get_params()["schema"]
    assert isinstance(stored, DatasetSchema) and stored == CREDITCARD  # not a dict
    assert loaded["numbers"].schema is None


def test_a_numbers_only_detector_has_a_schema_once_fitted(rng):
    from sklearn.exceptions import NotFittedError

    from aedetect.model.detector import AutoencoderDetector

    det = AutoencoderDetector(hidden_units=(4, 2, 4), epochs=1, periodic_columns=[("b", 7.0)])
    with pytest.raises(NotFittedError):
        det.dataset_schema  # noqa: B018
    det.fit(pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"]))
    s = det.dataset_schema
    assert s.features == ["a", "b", "c"] and s.label is None and s.column("b").clock_periods == [7.0]
    assert Preprocessor.from_schema(s).blocks == Preprocessor(["a", "b", "c"], (), [("b", 7.0)]).blocks


def test_training_and_shards_need_a_schema(frame, tmp_path):
    from aedetect.data.shards import fit_from_shards
    from aedetect.model.detector import AutoencoderDetector
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    with pytest.raises(ValueError, match="needs the table's schema"):
        train_detector(frame, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="needs the shards' schema"):
        fit_from_shards(AutoencoderDetector(), tmp_path)
