"""The estimator in the scikit-learn stack: its own estimator checks, clone, Pipeline,
GridSearchCV with processes, cross_val_score and joblib."""

import numpy as np
import pandas as pd
import pytest
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from aedetect import AutoencoderDetector
from aedetect.evaluation.metrics import average_precision_scorer

# Checks expected to fail, each with its reason: none (all of scikit-learn's checks pass).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _small():
    # Few epochs and no XLA compile: each check fits several times.
    return AutoencoderDetector(hidden_units=(4,), epochs=2, jit_compile=False)


@parametrize_with_checks([_small()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _data(n=1200, seed=0):
    """Normal rows lie near a 2-dimensional plane in 6 columns; 5% anomalies lie off it."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    x = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 6)) + rng.normal(0, 0.05, (n, 6))
    x[y == 1] = rng.normal(0, 1.5, (y.sum(), 6))
    frame = pd.DataFrame(x, columns=[f"c{i}" for i in range(6)])
    frame["amount"] = rng.lognormal(3, 1, n)
    return frame, y


def test_clone_keeps_parameters_exactly():
    det = AutoencoderDetector(hidden_units=(8, 4, 8), periodic_columns=(("Time", 86400.0),), epochs=3)
    copy = clone(det)
    assert copy is not det and copy.get_params() == det.get_params()
    assert copy.hidden_units == (8, 4, 8)


def test_pipeline_after_a_column_transformer():
    x, y = _data()
    prep = ColumnTransformer([("log", FunctionTransformer(np.log1p), ["amount"])], remainder="passthrough")
    pipe = make_pipeline(prep, StandardScaler(), AutoencoderDetector((8, 3, 8), epochs=20, jit_compile=False))
    pipe.fit(x[y == 0])
    pred = pipe.predict(x)
    assert set(np.unique(pred)) <= {-1, 1}
    assert average_precision_scorer(pipe, x, y) > 0.5  # quality floor; 0.05 is chance


def test_grid_search_with_processes_and_an_average_precision_scorer():
    x, y = _data(800)
    x = x.drop(columns="amount")
    search = GridSearchCV(AutoencoderDetector(epochs=30, jit_compile=False),
                          {"hidden_units": [(8, 3, 8), (8, 5, 8)]}, scoring=average_precision_scorer,
                          cv=KFold(2, shuffle=True, random_state=0), n_jobs=2)
    search.fit(x, y)
    assert search.best_params_["hidden_units"] in [(8, 3, 8), (8, 5, 8)]
    assert search.best_score_ > 0.5  # quality floor; 0.05 is chance
    assert isinstance(search.best_estimator_, AutoencoderDetector)


def test_cross_val_score():
    x, y = _data(600)
    det = AutoencoderDetector((8, 3, 8), epochs=30, log_columns=("amount",), jit_compile=False)
    scores = cross_val_score(det, x, y,
                             scoring=average_precision_scorer, cv=KFold(2, shuffle=True, random_state=0))
    assert scores.shape == (2,) and (scores > 0.4).all()


def _fit_and_score(det, x):
    return det.fit(x).anomaly_score(x)


def test_joblib_processes_fit_and_return_fitted_detectors():
    x, _ = _data(400)
    dets = [AutoencoderDetector((4,), epochs=2, seed=s, jit_compile=False) for s in (0, 1)]
    scores = Parallel(n_jobs=2, backend="loky")(delayed(_fit_and_score)(d, x) for d in dets)
    assert [s.shape for s in scores] == [(400,), (400,)]
    fitted = Parallel(n_jobs=2, backend="loky")(delayed(lambda d: d.fit(x))(d) for d in dets)
    np.testing.assert_allclose(fitted[0].anomaly_score(x), scores[0], rtol=1e-6)


@pytest.mark.parametrize("method", ["predict", "decision_function", "score_samples"])
def test_pipeline_exposes_the_outlier_methods(method):
    x, y = _data(400)
    pipe = make_pipeline(StandardScaler(), AutoencoderDetector((4,), epochs=2, jit_compile=False)).fit(x)
    assert getattr(pipe, method)(x).shape == (400,)
