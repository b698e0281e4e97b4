"""The scikit-learn baselines score in the detector's direction: higher = more anomalous."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
from aedetect.data.generate import generate_transactions
from aedetect.evaluation.baselines import BASELINES, LOFScorer
from aedetect.model.preprocessing import Preprocessor


@pytest.fixture(scope="module")
def data():
    df = generate_transactions(3000, 0.05, seed=3)
    features = list(CREDITCARD.features)
    x = Preprocessor(features, LOG_COLUMNS, PERIODIC_COLUMNS).fit(
        df.loc[df.Class == 0, features].to_numpy()).transform(df[features].to_numpy())
    return x, df["Class"].to_numpy()


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_baseline_ranks_anomalies_above_normals(data, baseline):
    x, y = data
    half = np.arange(len(y)) % 2 == 0
    model = baseline.factory(seed=0)
    if baseline.uses_labels:
        model.fit(x[half], y[half])
    else:
        model.fit(x[half & (y == 0)])
    scores = model.score_samples(x[~half])
    assert scores.shape == ((~half).sum(),)
    assert roc_auc_score(y[~half], scores) > 0.75


def test_lof_trains_on_a_seeded_subsample_and_says_so(data):
    x, y = data
    a = LOFScorer(seed=1, max_train=300).fit(x[y == 0])
    b = LOFScorer(seed=1, max_train=300).fit(x[y == 0])
    assert a.model_.n_samples_fit_ == 300 and "300-row subsample" in a.note
    np.testing.assert_allclose(a.score_samples(x[:50]), b.score_samples(x[:50]))


def test_pca_residual_scorer_keeps_90_percent_and_says_so(data):
    from aedetect.evaluation.baselines import PCAResidualScorer

    x, y = data
    model = PCAResidualScorer().fit(x[y == 0])
    assert model.model_.explained_variance_ratio_.sum() >= 0.9
    assert f"{model.model_.n_components_} components" in model.note
    # the residual-Mahalanobis score of training normals averages about the residual dimension
    assert 0.5 * x.shape[1] < model.score_samples(x[y == 0]).mean() < 1.5 * x.shape[1]
