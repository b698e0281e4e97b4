"""scikit-learn baselines, scored in the detector's direction (higher = more anomalous).

Each takes the preprocessed matrix (the detector's own preprocessing, fitted on the training
normals), so the comparison differs only in the model. The supervised ceiling is the one method
that sees labels: it is trained on every labelled row outside the test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from threadpoolctl import threadpool_limits


class IsolationForestScorer:
    note = "100 trees, 256 rows each"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X, y=None) -> IsolationForestScorer:
        self.model_ = IsolationForest(n_estimators=100, random_state=self.seed, n_jobs=1).fit(X)
        return self

    def score_samples(self, X) -> np.ndarray:
        return -self.model_.score_samples(X)


class PCAScorer:
    """Reconstruction error through the top principal components: a linear autoencoder."""

    def __init__(self, seed: int = 0, n_components: int = 8):
        self.seed, self.n_components = seed, n_components
        self.note = f"{n_components} components (the guide network's bottleneck width)"

    def fit(self, X, y=None) -> PCAScorer:
        self.model_ = PCA(n_components=min(self.n_components, X.shape[1]), random_state=self.seed).fit(X)
        return self

    def score_samples(self, X) -> np.ndarray:
        back = self.model_.inverse_transform(self.model_.transform(X))
        return np.mean((np.asarray(X) - back) ** 2, axis=1)


class PCAResidualScorer:
    """PCA as a linear autoencoder scored like the default detector: the Mahalanobis distance of
    its residuals (`aedetect.model.scores`). Components: those holding 90% of the training variance.
    Residual statistics come from the training normals (a linear fit barely overfits them)."""

    def __init__(self, seed: int = 0, variance: float = 0.9):
        self.seed, self.variance = seed, variance
        self.note = f"components for {variance:.0%} of the variance, residual Mahalanobis"

    def fit(self, X, y=None) -> PCAResidualScorer:
        from aedetect.model.scores import fit_stats

        X = np.asarray(X)
        self.model_ = PCA(n_components=self.variance, svd_solver="full", random_state=self.seed).fit(X)
        self.stats_ = fit_stats("residual_mahalanobis", self._residuals(X))
        self.note = (f"{self.model_.n_components_} components ({self.variance:.0%} of the variance), "
                     "residual Mahalanobis")
        return self

    def _residuals(self, X) -> np.ndarray:
        X = np.asarray(X)
        return self.model_.inverse_transform(self.model_.transform(X)) - X

    def score_samples(self, X) -> np.ndarray:
        from aedetect.model.scores import contributions

        return contributions("residual_mahalanobis", self.stats_, self._residuals(X)).sum(axis=1)


class LOFScorer:
    """LocalOutlierFactor in novelty mode. Its cost grows with the training rows times the
    scored rows, so it trains on a seeded subsample of at most `max_train` normals."""

    def __init__(self, seed: int = 0, max_train: int = 20_000, n_neighbors: int = 20):
        self.seed, self.max_train, self.n_neighbors = seed, max_train, n_neighbors
        self.note = f"novelty mode, {n_neighbors} neighbours"

    def fit(self, X, y=None) -> LOFScorer:
        X = np.asarray(X)
        if len(X) > self.max_train:
            pick = np.random.default_rng(self.seed).choice(len(X), self.max_train, replace=False)
            X = X[np.sort(pick)]
            self.note = (f"novelty mode, {self.n_neighbors} neighbours, trained on a "
                         f"{self.max_train:,}-row subsample")
        self.model_ = LocalOutlierFactor(n_neighbors=self.n_neighbors, novelty=True, n_jobs=1).fit(X)
        return self

    def score_samples(self, X) -> np.ndarray:
        return -self.model_.score_samples(X)


class SupervisedScorer:
    """HistGradientBoosting on labels: not an anomaly detector but the ceiling labels allow.

    It runs on one OpenMP thread: on a shared machine its threads spin against each other and
    a fit becomes ten times slower, not faster.
    """

    note = "USES LABELS: 200 trees, trained on every labelled row outside the test set"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X, y) -> SupervisedScorer:
        with threadpool_limits(1):
            # Without l2 the leaf values of near-pure leaves blow up on data with 0.2% anomalies:
            # on the real file the defaults score every test row alike (ROC-AUC 0.5).
            self.model_ = HistGradientBoostingClassifier(
                random_state=self.seed, early_stopping=False, max_iter=200, learning_rate=0.05,
                l2_regularization=1.0).fit(X, y)
        self.n_labelled_anomalies_ = int(np.sum(y))
        return self

    def score_samples(self, X) -> np.ndarray:
        with threadpool_limits(1):
            return self.model_.predict_proba(X)[:, 1]


@dataclass(frozen=True)
class Baseline:
    name: str
    factory: type
    uses_labels: bool = False


BASELINES = (
    Baseline("IsolationForest", IsolationForestScorer),
    Baseline("PCA reconstruction", PCAScorer),
    Baseline("PCA + residual Mahalanobis", PCAResidualScorer),
    Baseline("LocalOutlierFactor", LOFScorer),
    Baseline("HistGradientBoosting (supervised)", SupervisedScorer, uses_labels=True),
)
