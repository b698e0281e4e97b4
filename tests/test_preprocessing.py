import numpy as np
import pytest
import tensorflow as tf

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
from aedetect.errors import DataError
from aedetect.model.preprocessing import Preprocessor


def _pre():
    return Preprocessor(CREDITCARD.features, LOG_COLUMNS, PERIODIC_COLUMNS)


def test_output_layout_and_standardisation(frame):
    x = frame[list(CREDITCARD.features)].to_numpy()
    p = _pre().fit(x)
    z = p.transform(x)
    assert p.output_names[:2] == ["Time:sin", "Time:cos"] and p.output_names[-1] == "log1p(Amount)"
    assert z.shape == (len(x), 31) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-3)


def test_numpy_and_tensorflow_paths_agree(frame):
    x = frame[list(CREDITCARD.features)].to_numpy()
    p = _pre().fit(x)
    np.testing.assert_allclose(p.transform_tf(tf.constant(x, tf.float32)).numpy(), p.transform(x),
                               atol=2e-4)


def test_partial_fit_over_chunks_equals_fit(frame):
    x = frame[list(CREDITCARD.features)].to_numpy()
    whole = _pre().fit(x)
    chunked = _pre()
    for part in np.array_split(x, 7):
        chunked.partial_fit(part)
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked.scale_, whole.scale_, rtol=1e-5)


def test_config_round_trip_and_checks(frame):
    x = frame[list(CREDITCARD.features)].to_numpy()
    p = _pre().fit(x)
    q = Preprocessor.from_config(p.to_config())
    np.testing.assert_array_equal(q.transform(x), p.transform(x))
    with pytest.raises(DataError, match=r"expected 30 feature columns .* shape \(5, 29\)"):
        p.transform(x[:5, :29])
    with pytest.raises(RuntimeError, match="not fitted"):
        _pre().transform(x)


def test_constant_column_does_not_divide_by_zero():
    x = np.ones((20, 3))
    x[:, 1] = np.arange(20)
    z = Preprocessor(["a", "b", "c"]).fit(x).transform(x)
    assert np.isfinite(z).all()
