"""Threshold rules: small pure functions over scores (and labels, when given).

Every rule returns a float `t`; rows with score > t are flagged. Scores follow one direction:
higher = more anomalous.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import precision_recall_curve

RULES = ("fixed", "best_f1", "normal_percentile", "min_precision")


@dataclass(frozen=True)
class Threshold:
    """A chosen threshold and how it was chosen (stored in the artifact)."""

    rule: str
    value: float
    params: dict = field(default_factory=dict)
    source: str = ""  # which rows the rule looked at, e.g. "selection set (12 anomalies)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Threshold:
        return cls(rule=d["rule"], value=float(d["value"]), params=dict(d.get("params", {})),
                   source=d.get("source", ""))


def _check_labelled(scores, y) -> tuple[np.ndarray, np.ndarray]:
    scores, y = np.asarray(scores, dtype="float64"), np.asarray(y)
    if scores.shape != y.shape:
        raise ValueError(f"scores and labels differ in shape: {scores.shape} vs {y.shape}")
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError(
            f"a labelled rule needs both classes; got {int((y == 1).sum())} anomalies "
            f"and {int((y == 0).sum())} normals"
        )
    return scores, y


def _between(scores: np.ndarray, cut: float) -> float:
    """A threshold just below `cut`: halfway to the next lower score, so `cut` itself is flagged."""
    lower = scores[scores < cut]
    return float((cut + lower.max()) / 2) if lower.size else float(np.nextafter(cut, -np.inf))


def fixed(value: float) -> float:
    if not np.isfinite(value):
        raise ValueError(f"a fixed threshold must be a finite number; got {value!r}")
    return float(value)


def normal_percentile(normal_scores, q: float = 99.9) -> float:
    """Label-free: the q-th percentile of scores of rows known (or assumed) to be normal.

    About (100 - q)% of normal rows will be flagged, whatever the anomalies look like.
    """
    if not 0 < q < 100:
        raise ValueError(f"q must be in (0, 100); got {q!r}")
    s = np.asarray(normal_scores, dtype="float64")
    if s.size == 0:
        raise ValueError("normal_percentile needs at least one score")
    return float(np.percentile(s, q))


def best_f1(scores, y) -> float:
    """The guide's sweep: try every distinct score as a cut and keep the one with the best F1."""
    scores, y = _check_labelled(scores, y)
    precision, recall, cuts = precision_recall_curve(y, scores)
    p, r = precision[:-1], recall[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return _between(scores, cuts[int(np.argmax(f1))])


def min_precision(scores, y, min_precision: float = 0.93) -> float:
    """The lowest cut (highest recall) whose precision is at least `min_precision`."""
    if not 0 < min_precision <= 1:
        raise ValueError(f"min_precision must be in (0, 1]; got {min_precision!r}")
    scores, y = _check_labelled(scores, y)
    precision, recall, cuts = precision_recall_curve(y, scores)
    ok = np.flatnonzero(precision[:-1] >= min_precision)
    if ok.size == 0:
        # No cut reaches it: flag nothing rather than pretend.
        return float(scores.max())
    best = ok[np.argmax(recall[:-1][ok])]
    return _between(scores, cuts[best])


def choose_threshold(
    rule: str,
    *,
    value: float | None = None,
    normal_scores=None,
    scores=None,
    y=None,
    q: float = 99.9,
    precision: float = 0.93,
    source: str = "",
) -> Threshold:
    """Apply a named rule; the result records the rule, its parameters and the rows it used."""
    if rule == "fixed":
        if value is None:
            raise ValueError("rule 'fixed' needs a value")
        return Threshold("fixed", fixed(value), {"value": value}, source or "given")
    if rule == "normal_percentile":
        return Threshold("normal_percentile", normal_percentile(normal_scores, q), {"q": q}, source)
    if rule == "best_f1":
        return Threshold("best_f1", best_f1(scores, y), {}, source)
    if rule == "min_precision":
        return Threshold("min_precision", min_precision(scores, y, precision),
                         {"min_precision": precision}, source)
    raise ValueError(f"threshold rule must be one of {RULES}; got {rule!r}")
