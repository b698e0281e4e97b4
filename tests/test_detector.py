import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils._param_validation import InvalidParameterError

from aedetect import AutoencoderDetector
from aedetect.data.creditcard import CREDITCARD
from aedetect.errors import DataError

FEATURES = list(CREDITCARD.features)


def test_fit_returns_self_and_sets_fitted_attributes(frame):
    normals = frame[frame["Class"] == 0][FEATURES].head(1500)
    det = AutoencoderDetector((8, 4, 8), epochs=2, jit_compile=False)
    assert det.fit(normals) is det
    assert det.n_features_in_ == 30 and list(det.feature_names_in_) == FEATURES
    assert len(det.feature_names_out_) == 30  # no periodic column here: one output per column
    assert 1 <= det.best_epoch_ <= det.n_epochs_ <= 2
    assert len(det.history_["loss"]) == det.n_epochs_
    assert det.threshold.rule == "normal_percentile" and det.threshold_ > 0
    assert det.offset_ == -det.threshold_


def test_scores_separate_anomalies(frame, fitted):
    scores = fitted.anomaly_score(frame[FEATURES])
    assert scores.shape == (len(frame),) and (scores >= 0).all()
    assert roc_auc_score(frame["Class"], scores) > 0.9  # quality floor on generated data


def test_scikit_learn_outlier_convention(frame, fitted):
    x = frame[FEATURES]
    a = fitted.anomaly_score(x)
    np.testing.assert_allclose(fitted.score_samples(x), -a)
    np.testing.assert_allclose(fitted.decision_function(x), fitted.threshold_ - a)
    pred = fitted.predict(x)
    assert pred.dtype.kind == "i" and set(np.unique(pred)) == {-1, 1}
    np.testing.assert_array_equal(pred == -1, a > fitted.threshold_)
    np.testing.assert_array_equal(pred == -1, fitted.decision_function(x) < 0)
    np.testing.assert_allclose(fitted.feature_contributions(x).sum(axis=1), a, rtol=1e-6)


def test_feature_names_follow_scikit_learn(frame, fitted):
    x = frame[FEATURES].head(50)
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        fitted.anomaly_score(x[FEATURES[::-1]])
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing:\n- Amount"):
        fitted.anomaly_score(x.drop(columns="Amount"))
    with pytest.raises(ValueError, match="X has 29 features, but AutoencoderDetector is expecting 30"), \
            pytest.warns(UserWarning, match="X does not have valid feature names"):  # scikit-learn's, first
        fitted.anomaly_score(np.zeros((3, 29)))


def test_non_finite_values_are_named_by_column_and_row(frame, fitted):
    bad = frame[FEATURES].head(5).copy()
    bad.iloc[2, 3] = np.nan
    with pytest.raises(DataError, match=r"column 'V3', row 3: value NaN is not a finite number"):
        fitted.anomaly_score(bad)
    bad.iloc[2, 3] = -np.inf
    with pytest.raises(DataError, match=r"column 'V3', row 3: value -inf"):
        fitted.predict(bad)
    text = bad.astype({"V1": object})
    text.iloc[0, 1] = "x"
    with pytest.raises(DataError, match=r"non-numeric column\(s\) \['V1'\]"):
        fitted.anomaly_score(text)


def test_unfitted_use_raises_not_fitted_error(frame):
    det = AutoencoderDetector()
    for method in ("anomaly_score", "score_samples", "decision_function", "predict"):
        with pytest.raises(NotFittedError):
            getattr(det, method)(frame[FEATURES])


@pytest.mark.parametrize(("param", "bad", "message"), [
    ("epochs", 0, "'epochs' parameter of AutoencoderDetector must be an int in the range"),
    ("dropout", 1.0, "'dropout' parameter of AutoencoderDetector must be a float in the range"),
    ("validation_fraction", 0.0, "'validation_fraction' parameter"),
    ("threshold_percentile", 100, "'threshold_percentile' parameter"),
    ("score_type", "l1", "'score_type' parameter of AutoencoderDetector must be a str among"),
    ("hidden_units", (8, 0, 8), "'hidden_units' parameter of AutoencoderDetector must be 'auto' or"),
    ("activation", "cubic", "'activation' parameter"),
])
def test_bad_parameters_name_the_parameter(frame, param, bad, message):
    with pytest.raises((InvalidParameterError, ValueError), match=message):
        AutoencoderDetector(**{param: bad}).fit(frame[FEATURES].head(100))


def test_parameters_are_returned_exactly_as_given():
    det = AutoencoderDetector(hidden_units=(8, 4, 8), periodic_columns=(("Time", 86400.0),))
    params = det.get_params(deep=True)
    assert params["hidden_units"] == (8, 4, 8) and params["periodic_columns"] == (("Time", 86400.0),)
    with pytest.raises(ValueError, match="Invalid parameter 'depth'"):
        det.set_params(depth=3)
    assert "hidden_units=(8, 4, 8)" in repr(det)


def test_fit_ignores_labels(frame):
    """y is ignored, as in every scikit-learn outlier detector: the labels never become
    validation rows (they used to, silently)."""
    normals = frame[frame["Class"] == 0][FEATURES].head(600)
    a = AutoencoderDetector((8, 4, 8), epochs=2, seed=5, jit_compile=False).fit(normals)
    b = AutoencoderDetector((8, 4, 8), epochs=2, seed=5, jit_compile=False).fit(
        normals, np.zeros(len(normals)))
    assert a.n_validation_ == b.n_validation_ == 60
    np.testing.assert_array_equal(a.anomaly_score(normals), b.anomaly_score(normals))


def test_same_seed_same_model(frame):
    normals = frame[frame["Class"] == 0][FEATURES].head(2000)
    a = AutoencoderDetector((8, 4, 8), epochs=2, seed=5).fit(normals)
    b = AutoencoderDetector((8, 4, 8), epochs=2, seed=5).fit(normals)
    c = AutoencoderDetector((8, 4, 8), epochs=2, seed=6).fit(normals)
    x = frame[FEATURES].head(100)
    np.testing.assert_array_equal(a.anomaly_score(x), b.anomaly_score(x))
    assert not np.allclose(a.anomaly_score(x), c.anomaly_score(x))


def test_numpy_input_has_no_feature_names():
    x = np.random.default_rng(0).normal(size=(500, 6))
    det = AutoencoderDetector((3,), epochs=1, jit_compile=False).fit(x)
    assert not hasattr(det, "feature_names_in_") and det.n_features_in_ == 6
    assert det.preprocessor_.feature_names == [f"x{i}" for i in range(6)]
    assert det.anomaly_score(x).shape == (500,)


@pytest.mark.parametrize("score_type", ["mse", "feature_normalized", "residual_mahalanobis"])
def test_score_types_sum_their_contributions(frame, tmp_path, score_type):
    normals = frame[frame["Class"] == 0][FEATURES]
    det = AutoencoderDetector((16, 6, 16), epochs=6, batch_size=256, score_type=score_type, seed=3,
                              log_columns=["Amount"], periodic_columns=[("Time", 86400.0)]).fit(normals)
    x = frame[FEATURES]
    s, c = det.score_with_contributions(x)
    assert c.shape == (len(x), 31)
    np.testing.assert_allclose(det.anomaly_score(x), s)
    if score_type == "mse":
        np.testing.assert_allclose(det.feature_errors(x).mean(axis=1), s, rtol=1e-6)
    assert roc_auc_score(frame["Class"], s) > 0.9
    assert (det.validation_scores_ > det.threshold_).mean() <= 0.002
    loaded = AutoencoderDetector.load(det.save(tmp_path / score_type))
    np.testing.assert_allclose(loaded.anomaly_score(x), s, rtol=1e-6)
    assert loaded.get_params() == det.get_params()


def test_the_guide_network_is_a_parameter_set(frame):
    normals = frame[frame["Class"] == 0][FEATURES]
    det = AutoencoderDetector((20, 8, 20), "tanh", epochs=3, batch_size=256, score_type="mse",
                              members=1).fit(normals)
    assert [layer.units for layer in det.model_.layers[1:]] == [20, 8, 20, 30]
    assert roc_auc_score(frame["Class"], det.anomaly_score(frame[FEATURES])) > 0.85


def test_validation_data_is_used_when_given(frame):
    normals = frame[frame["Class"] == 0][FEATURES]
    det = AutoencoderDetector((4,), epochs=1, jit_compile=False).fit(
        normals.iloc[:3000], validation_data=normals.iloc[3000:3500])
    assert det.n_train_ == 3000 and det.n_validation_ == 500


def test_score_and_errors_match_the_separate_calls(frame, fitted):
    x = frame[FEATURES].head(300)
    scores, errors = fitted.score_and_errors(x)
    np.testing.assert_allclose(scores, fitted.anomaly_score(x), rtol=1e-9)
    np.testing.assert_allclose(errors, fitted.feature_errors(x), rtol=1e-9)
    fast, contrib = fitted.score_matrix(x.to_numpy())
    np.testing.assert_allclose(fast, scores, rtol=1e-9)


def test_pickle_round_trip_keeps_the_network(frame, fitted):
    x = frame[FEATURES].head(200)
    copy = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(copy.anomaly_score(x), fitted.anomaly_score(x))
    assert copy.threshold == fitted.threshold and copy.get_params() == fitted.get_params()


def test_state_round_trip_without_a_folder(frame, fitted):
    state = fitted.get_state()
    again = AutoencoderDetector.from_state(state, fitted.model_)
    x = frame[FEATURES].head(100)
    np.testing.assert_array_equal(again.anomaly_score(x), fitted.anomaly_score(x))
    assert list(again.feature_names_in_) == FEATURES


def test_a_tiny_table_fits():
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [1.0, 0.5, 0.0]})
    det = AutoencoderDetector(epochs=1, jit_compile=False).fit(x)
    assert det.predict(x).shape == (3,)
    with pytest.raises(ValueError, match="got 1 sample"):
        AutoencoderDetector(epochs=1).fit(x.head(1))


def test_a_robust_fit_trims_the_planted_rows_and_keeps_its_parameter(tmp_path):
    from aedetect.training.config import TrainConfig, parse_settings

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 12))

    def normals(n):
        return rng.normal(size=(n, 4)) @ w + 0.1 * rng.normal(size=(n, 12))

    planted = rng.normal(size=(60, 12)) * 3  # 2% of the training rows, unlabelled
    x, clean = np.vstack([normals(3000), planted]), normals(1000)
    # One network: the members of an ensemble this small reconstruct from 0.02 to 0.24 mean
    # squared error depending on their start, which drowns the trimming's effect in this check
    # (with the default 3 networks: 0.115 plain, 0.108 robust on the clean rows).
    plain = AutoencoderDetector(seed=0, members=1).fit(x)
    robust = AutoencoderDetector(seed=0, robust=0.02, members=1).fit(x)

    def err(det, rows):
        return float(np.mean(det.feature_errors(rows)))

    # The plain fit learns the planted rows; the robust one reconstructs the normals better and
    # the planted rows worse.
    assert err(robust, clean) < 0.8 * err(plain, clean)
    assert err(robust, planted) > err(plain, planted)
    assert plain.get_params()["robust"] == 0.0
    again = AutoencoderDetector.load(robust.save(tmp_path / "m"))
    assert again.get_params()["robust"] == 0.02
    np.testing.assert_array_equal(again.anomaly_score(clean), robust.anomaly_score(clean))
    assert TrainConfig(**parse_settings(["robust=0.01"])).detector_params()["robust"] == 0.01
    with pytest.raises(InvalidParameterError, match="'robust' parameter"):
        AutoencoderDetector(robust=0.6).fit(x)


def test_robust_zero_is_the_plain_fit(frame):
    x = frame[FEATURES].head(600)
    a = AutoencoderDetector(epochs=3, seed=1).fit(x)
    b = AutoencoderDetector(epochs=3, seed=1, robust=0.0).fit(x)
    np.testing.assert_array_equal(a.anomaly_score(x), b.anomaly_score(x))
    for u, v in zip(a.model_.get_weights(), b.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
