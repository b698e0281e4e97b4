"""Threshold rules: small pure functions over scores (and labels, when given).

Every rule returns a float `t`; rows with score > t are flagged. Scores follow one direction:
higher = more anomalous.

Label-free rules: fixed, normal_percentile, contamination, alert_budget.
Labelled rules (need both classes): best_f1, min_precision, max_fpr, expected_cost.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from sklearn.metrics import precision_recall_curve

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Threshold:
    """A chosen threshold and how it was chosen (stored in the artifact).

    `estimate`: precision and recall expected at this threshold on the labelled selection set,
    with exact binomial intervals (see `aedetect.model.uncertainty`); `warnings`: why not to trust it much.
    """

    rule: str
    value: float
    params: dict = field(default_factory=dict)
    source: str = ""  # which rows the rule looked at, e.g. "selection set (12 anomalies)"
    estimate: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def __post_init__(self):
        # The one home of the rule: a NaN or infinite threshold flags nothing (or everything)
        # without a word, whether set by a rule, by hand or read from a folder.
        if not np.isfinite(self.value):
            raise ValueError(f"a threshold must be a finite number; got {self.value!r}")

    @classmethod
    def given(cls, value: Threshold | float) -> Threshold:
        """`value` as a Threshold: a plain number becomes a fixed threshold set by hand."""
        if isinstance(value, Threshold):
            return value
        return cls("fixed", float(value), {"value": float(value)}, "given")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Threshold:
        return cls(rule=d["rule"], value=float(d["value"]), params=dict(d.get("params", {})),
                   source=d.get("source", ""), estimate=dict(d.get("estimate", {})),
                   warnings=list(d.get("warnings", [])))


class HasThreshold:
    """The `threshold` of a scorer (a Threshold; a plain number is taken as a fixed one, set by
    hand) and its value `threshold_`, for the estimator and the label-aware hybrid alike."""

    def _check_threshold_set(self) -> None:
        """Raise when the threshold cannot be read yet (the estimator: before `fit`)."""

    @property
    def threshold(self) -> Threshold:
        self._check_threshold_set()
        return self._threshold

    @threshold.setter
    def threshold(self, value: Threshold | float) -> None:
        self._threshold = Threshold.given(value)

    @property
    def threshold_(self) -> float:
        return self.threshold.value


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


def _top_k(scores, k: int) -> float:
    """A cut that flags at most `k` rows (fewer when scores tie at the boundary)."""
    s = np.sort(np.asarray(scores, dtype="float64"))[::-1]
    if s.size == 0:
        raise ValueError("a threshold rule needs at least one score")
    if k <= 0:
        return float(s[0])
    if k >= s.size:
        return float(np.nextafter(s[-1], -np.inf))
    return float(s[k])


def fixed(value: float = 10.0) -> float:
    """A given value; by default the guide's 10."""
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


def contamination(scores, share: float = 0.001) -> float:
    """Label-free: flag the top `share` of the (unlabelled) scored rows: floor(share * n) rows."""
    if not 0 < share < 0.5:
        raise ValueError(f"contamination must be in (0, 0.5); got {share!r}")
    s = np.asarray(scores, dtype="float64")
    return _top_k(s, int(np.floor(share * s.size + 1e-9)))


def rows_per_day(time) -> float:
    """Rows per day of a stream whose `time` column counts seconds."""
    t = np.asarray(time, dtype="float64")
    span = float(t.max() - t.min()) if t.size else 0.0
    if span <= 0:
        raise ValueError("the Time column spans no time; cannot count alerts per day")
    return t.size / (span / SECONDS_PER_DAY)


def alert_budget(scores, alerts_per_day: float = 50.0, rows_per_day: float | None = None) -> float:
    """Label-free: at most `alerts_per_day` alerts per day, for a stream of `rows_per_day` rows a day.

    The scored rows are taken as a sample of that stream: floor(len(scores) * alerts_per_day /
    rows_per_day) of them are flagged. For a contiguous window of the stream, `rows_per_day` is
    `rows_per_day(time)` of the same rows; for a random sample, pass the whole stream's rate.
    """
    if not alerts_per_day > 0:
        raise ValueError(f"alerts_per_day must be > 0; got {alerts_per_day!r}")
    if rows_per_day is None or not rows_per_day > 0:
        raise ValueError(f"alert_budget needs the stream's rows per day (> 0); got {rows_per_day!r}")
    s = np.asarray(scores, dtype="float64")
    return _top_k(s, int(np.floor(s.size * alerts_per_day / rows_per_day + 1e-9)))


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


def max_fpr(scores, y, max_fpr: float = 0.001) -> float:
    """The lowest cut whose false-positive rate is at most `max_fpr`: at most floor(max_fpr * n0)
    of the n0 normal rows are flagged, and every anomaly above the cut is caught."""
    if not 0 <= max_fpr < 1:
        raise ValueError(f"max_fpr must be in [0, 1); got {max_fpr!r}")
    scores, y = _check_labelled(scores, y)
    normals = scores[y == 0]
    return _top_k(normals, int(np.floor(max_fpr * normals.size + 1e-9)))


def expected_cost(scores, y, cost_missed: float = 100.0, cost_review: float = 5.0,
                  amounts=None) -> float:
    """The cut with the lowest total cost: `cost_missed` per missed anomaly (times its amount when
    `amounts` is given) plus `cost_review` per flagged row. Ties go to the fewer alerts."""
    if cost_missed < 0 or cost_review < 0:
        raise ValueError(f"costs must be >= 0; got cost_missed={cost_missed!r}, "
                         f"cost_review={cost_review!r}")
    scores, y = _check_labelled(scores, y)
    value = np.where(y == 1, 1.0, 0.0)
    if amounts is not None:
        amounts = np.asarray(amounts, dtype="float64")
        if amounts.shape != scores.shape:
            raise ValueError(f"amounts and scores differ in shape: {amounts.shape} vs {scores.shape}")
        value = value * amounts
    order = np.argsort(-scores, kind="stable")
    s, caught = scores[order], np.cumsum(value[order])
    # Flagging the top i rows is only possible where a score differs from the next one.
    ends = np.flatnonzero(np.append(s[:-1] > s[1:], True))  # last index of each tie group
    n_flagged = np.concatenate([[0], ends + 1])
    missed = value.sum() - np.concatenate([[0.0], caught[ends]])
    cost = cost_missed * missed + cost_review * n_flagged
    best = int(np.argmin(cost))
    return float(s[0]) if best == 0 else _between(scores, s[ends[best - 1]])


@dataclass(frozen=True)
class Rule:
    """A threshold rule: `fn(scores[, y], **params) -> float`, which scores it looks at, and its
    parameters. `config` maps each parameter to the TrainConfig field that sets it."""

    name: str
    fn: Callable[..., float]
    data: Literal["none", "normal", "stream", "labelled"]
    config: dict = field(default_factory=dict)
    description: str = ""

    @property
    def needs_labels(self) -> bool:
        return self.data == "labelled"


# One registry used by training, the CLI (help texts, option checks) and the reports.
RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("fixed", fixed, "none", {"value": "threshold_value"}, "a given value (the guide's 10)"),
    Rule("normal_percentile", normal_percentile, "normal", {"q": "threshold_percentile"},
         "the q-th percentile of validation normals' scores (label-free)"),
    Rule("contamination", contamination, "stream", {"share": "contamination"},
         "flag the top share of a stretch of the stream (label-free)"),
    Rule("alert_budget", alert_budget, "stream", {"alerts_per_day": "alerts_per_day"},
         "at most k alerts a day (label-free; needs a time column)"),
    Rule("best_f1", best_f1, "labelled", {}, "the cut with the best F1 on the selection set"),
    Rule("min_precision", min_precision, "labelled", {"min_precision": "min_precision"},
         "the highest recall at a precision floor"),
    Rule("max_fpr", max_fpr, "labelled", {"max_fpr": "max_fpr"},
         "the highest recall at a false-positive-rate ceiling"),
    Rule("expected_cost", expected_cost, "labelled",
         {"cost_missed": "cost_missed", "cost_review": "cost_review"},
         "the lowest cost of missed anomalies plus reviewed alerts"),
)}


def get_rule(name: str) -> Rule:
    if name not in RULES:
        raise ValueError(f"threshold rule must be one of {tuple(RULES)}; got {name!r}")
    return RULES[name]


def choose_threshold(rule: str, *, scores=None, y=None, source: str = "", **params) -> Threshold:
    """Apply a named rule from `RULES`; the result records the rule, its parameters and the rows
    it used. `scores` are the rows the rule looks at (validation normals for normal_percentile,
    a stretch of the stream for contamination and alert_budget, labelled rows for the others)."""
    r = get_rule(rule)
    params = {k: v for k, v in params.items() if v is not None}
    signature = inspect.signature(r.fn).parameters
    accepted = set(signature) - {"scores", "y", "normal_scores"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"rule {rule!r} takes {sorted(accepted) or 'no parameters'}; got {unknown}")
    # The rule's own defaults (fixed's 10, say) are recorded with the threshold like given values.
    defaults = {k: signature[k].default for k in accepted
                if signature[k].default not in (None, inspect.Parameter.empty)}
    params = {**defaults, **params}
    if r.data == "none":
        value = r.fn(**params)
    elif r.needs_labels:
        value = r.fn(scores, y, **params)
    else:
        if scores is None:
            raise ValueError(f"rule {rule!r} needs scores")
        value = r.fn(scores, **params)
    stored = {k: v for k, v in params.items() if k != "amounts"}
    if rule == "expected_cost":
        stored["times_amount"] = params.get("amounts") is not None
    return Threshold(rule, float(value), stored, source or ("given" if rule == "fixed" else ""))
