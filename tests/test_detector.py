import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aedetect import AutoencoderDetector
from aedetect.data.schema import CREDITCARD
from aedetect.errors import DataError

FEATURES = list(CREDITCARD.features)


def test_fit_returns_self_and_sets_fitted_attributes(fitted):
    assert fitted.n_features_in_ == 30 and fitted.feature_names_in_ == FEATURES
    assert len(fitted.feature_names_out_) == 31
    assert 1 <= fitted.best_epoch_ <= fitted.n_epochs_ <= 8
    assert len(fitted.history_["loss"]) == fitted.n_epochs_
    assert fitted.threshold.rule == "normal_percentile" and fitted.threshold_ > 0


def test_scores_separate_anomalies(frame, fitted):
    scores = fitted.score_samples(frame[FEATURES])
    assert scores.shape == (len(frame),) and (scores >= 0).all()
    assert roc_auc_score(frame["Class"], scores) > 0.9  # quality floor on generated data


def test_one_score_direction(frame, fitted):
    x = frame[FEATURES].head(200)
    s = fitted.score_samples(x)
    np.testing.assert_allclose(fitted.decision_function(x), s - fitted.threshold_)
    np.testing.assert_array_equal(fitted.predict(x), (s > fitted.threshold_).astype(int))
    np.testing.assert_allclose(fitted.feature_contributions(x).sum(axis=1), s, rtol=1e-6)


def test_columns_are_matched_by_name(frame, fitted):
    x = frame[FEATURES].head(50)
    shuffled = x[FEATURES[::-1]].assign(extra=1.0)
    np.testing.assert_allclose(fitted.score_samples(shuffled), fitted.score_samples(x))


def test_wrong_input_is_explained(frame, fitted):
    with pytest.raises(DataError, match=r"missing column\(s\) \['Amount'\]"):
        fitted.score_samples(frame[FEATURES].drop(columns="Amount"))
    with pytest.raises(DataError, match="X has 29 features, but the detector was fitted with 30"):
        fitted.score_samples(np.zeros((3, 29)))
    bad = frame[FEATURES].head(5).copy()
    bad.iloc[2, 3] = np.nan
    with pytest.raises(DataError, match=r"column 'V3', row 3: value nan"):
        fitted.score_samples(bad)


def test_unfitted_and_bad_parameters(frame):
    with pytest.raises(RuntimeError, match="not fitted yet"):
        AutoencoderDetector().score_samples(frame[FEATURES])
    for bad in ({"epochs": 0}, {"dropout": 1.0}, {"validation_fraction": 0.0},
                {"threshold_percentile": 100}):
        with pytest.raises(ValueError, match="must be"):
            AutoencoderDetector(**bad).fit(frame[FEATURES])
    with pytest.raises(ValueError, match="unknown parameter 'depth'"):
        AutoencoderDetector().set_params(depth=3)


def test_same_seed_same_model(frame):
    normals = frame[frame["Class"] == 0][FEATURES].head(2000)
    a = AutoencoderDetector((8, 4, 8), epochs=2, seed=5).fit(normals)
    b = AutoencoderDetector((8, 4, 8), epochs=2, seed=5).fit(normals)
    c = AutoencoderDetector((8, 4, 8), epochs=2, seed=6).fit(normals)
    x = frame[FEATURES].head(300)
    np.testing.assert_array_equal(a.score_samples(x), b.score_samples(x))
    assert not np.allclose(a.score_samples(x), c.score_samples(x))


def test_numpy_input_gets_generic_names():
    x = np.random.default_rng(0).normal(size=(500, 4))
    det = AutoencoderDetector((3,), epochs=1).fit(x)
    assert det.feature_names_in_ == ["x0", "x1", "x2", "x3"]
    assert det.score_samples(pd.DataFrame(x, columns=det.feature_names_in_)).shape == (500,)


@pytest.mark.parametrize("score", ["mse", "feature_normalized", "residual_mahalanobis"])
def test_score_variants_sum_contributions_and_survive_saving(frame, tmp_path, score):
    normals = frame[frame["Class"] == 0][FEATURES]
    det = AutoencoderDetector((16, 6, 16), epochs=6, batch_size=256, score=score, seed=3, log_columns=["Amount"],
                              periodic_columns=[("Time", 86400.0)]).fit(normals)
    x = frame[FEATURES]
    s, c = det.score_with_contributions(x)
    np.testing.assert_allclose(c.sum(axis=1), s, rtol=1e-9)
    np.testing.assert_allclose(det.score_samples(x), s)
    if score == "mse":  # the guide's score: the mean squared reconstruction error
        np.testing.assert_allclose(det.feature_errors(x).mean(axis=1), s, rtol=1e-6)
    assert roc_auc_score(frame["Class"], s) > 0.9
    # the label-free threshold flags about 0.1% of validation normals
    assert (det.validation_scores_ > det.threshold_).mean() <= 0.002
    loaded = AutoencoderDetector.load(det.save(tmp_path / score))
    np.testing.assert_allclose(loaded.score_samples(x), s, rtol=1e-6)
    import tensorflow as tf

    x_pre = det.preprocessor_.transform(x.to_numpy())
    np.testing.assert_allclose(det.score_tf(tf.constant(x_pre)).numpy(), s, rtol=1e-4, atol=1e-4)


def test_unknown_score_is_refused(frame):
    with pytest.raises(ValueError, match="score must be one of"):
        AutoencoderDetector(score="l1").fit(frame[FEATURES])


def test_batch_size_is_lowered_for_small_training_sets():
    from aedetect.detector import effective_batch_size

    assert effective_batch_size(2048, 225_510) == 2048  # the credit-card training set
    assert effective_batch_size(2048, 7_000) == 140  # 50 steps an epoch
    assert effective_batch_size(2048, 500) == 32
    assert effective_batch_size(16, 500) == 16  # an explicit small batch is kept
    x = np.random.default_rng(0).normal(size=(3_000, 3))
    det = AutoencoderDetector((4,), epochs=1).fit(x)
    assert det.batch_size_ == 54  # 2,700 training rows after the 10% validation hold-out


def test_auto_code_width_follows_the_data():
    from aedetect.detector import resolve_hidden_units

    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(5000, 3)) @ rng.normal(size=(3, 20)) + 0.01 * rng.normal(size=(5000, 20))
    assert resolve_hidden_units("auto", low_rank) == (64, 32, 3, 32, 64)
    assert resolve_hidden_units("auto", rng.normal(size=(5000, 30))) == (64, 32, 16, 32, 64)
    assert resolve_hidden_units([20, 8, 20], low_rank) == (20, 8, 20)
    with pytest.raises(ValueError, match="'auto' or a list of sizes"):
        resolve_hidden_units("wide", low_rank)


def test_fitted_network_uses_the_resolved_sizes(fitted):
    assert fitted.hidden_units_ == (16, 6, 16)
    dense = [layer.units for layer in fitted.model_.layers if hasattr(layer, "units")]
    assert dense == [16, 6, 16, 31]


def test_score_and_errors_match_the_separate_calls(frame, fitted):
    x = frame[FEATURES].head(500)
    scores, errors = fitted.score_and_errors(x)
    np.testing.assert_allclose(scores, fitted.score_samples(x), rtol=1e-9)
    np.testing.assert_allclose(errors, fitted.feature_errors(x), rtol=1e-9)
