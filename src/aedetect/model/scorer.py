"""What every scorer offers, declared once: the estimator (`AutoencoderDetector`), the label-aware
`HybridDetector` and the NumPy runtime's `Scorer` all satisfy `AnomalyScorer`, and share
scikit-learn's outlier convention on top of the fraud view (`OutlierConventions`).

The batch scorer, the service, Spark and evaluation take any `AnomalyScorer`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class AnomalyScorer(Protocol):
    """A fitted model that scores rows: higher `anomaly_score` = more anomalous, rows above
    `threshold_` are flagged, and each score splits into per-feature contributions."""

    feature_names_in_: list[str]
    threshold_: float
    score_type: str

    def anomaly_score(self, X) -> np.ndarray:
        """One score per row of a table with the `feature_names_in_` columns."""

    def feature_contributions(self, X) -> np.ndarray:
        """Per preprocessed feature, each row's share of its score (explains a flag)."""

    def score_with_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        """`anomaly_score` and `feature_contributions` in one pass."""

    def score_matrix(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and contributions of an already checked float matrix in the fitted column
        order (the batch scorer's and the service's path)."""

    def score_samples(self, X) -> np.ndarray: ...

    def decision_function(self, X) -> np.ndarray: ...

    def predict(self, X) -> np.ndarray: ...


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
