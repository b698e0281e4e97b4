"""scikit-learn's outlier convention on top of the fraud view, shared by the estimator and the
NumPy runtime: both define `anomaly_score(X)` (higher = more anomalous) and `threshold_`."""

from __future__ import annotations

import numpy as np


class OutlierConventions:
    """`score_samples = -anomaly_score` (lower = more abnormal), `offset_ = -threshold_`,
    `decision_function = score_samples - offset_` (negative = outlier), `predict` = -1 / +1."""

    @property
    def offset_(self) -> float:
        return -self.threshold_

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's convention: the opposite of `anomaly_score` (lower = more abnormal)."""
        return -self.anomaly_score(X)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers (flagged rows)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """-1 for outliers (``anomaly_score > threshold_``), +1 for inliers."""
        return np.where(self.anomaly_score(X) > self.threshold_, -1, 1)
