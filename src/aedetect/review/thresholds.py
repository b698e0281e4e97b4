"""Thresholds from verdicts: where to put the threshold given what investigators decided.

The review store holds every flagged transaction of a model (an alert, with its score) and the
verdicts given so far. Two questions a team asks of them:

- **a precision**: the lowest threshold whose reviewed alerts above it are at least this share
  fraud (more alerts caught while precision holds);
- **a budget**: the lowest threshold that makes no more than this many alerts a day, over the days
  the alerts' transactions span (`alerts.event_time`, from the model's time column). Alerts
  without a transaction time (a model with no time column, alerts stored before it was kept)
  count the days between the first and the last alert made instead: a file scored a week at a
  time makes a week's alerts within a second, so that count is one day.

Each answer comes with the precision of the reviewed alerts above the threshold and its exact
binomial (Clopper-Pearson) interval (`aedetect.model.uncertainty`), and with how many verdicts,
at that precision, would narrow the interval to a given half-width. What it cannot know, it
says: alerts exist only above the model's threshold, so the threshold can be raised from the
verdicts, never lowered below the lowest alert; and when the reviewed alerts are a biased part
of those above the threshold (the queue shows the highest scores first), the precision is that
of the reviewed ones ("unsure" verdicts count as unreviewed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from aedetect.errors import DataError
from aedetect.model.uncertainty import proportion_interval


@dataclass
class ThresholdAdvice:
    threshold: float  # flags `score > threshold`
    rule: str  # what was asked, in words
    alerts_above: int  # alerts with a score at or above the threshold
    alerts_per_day: float  # of those, per day (`days`)
    days: float  # the days the alerts cover (`days_from`)
    days_from: str  # "transaction times" (event_time) or "when the alerts were made" (created_at)
    reviewed_above: int  # fraud or legit verdicts among them
    fraud_above: int
    precision: dict | None  # {"value", "low", "high", "level"} of the reviewed alerts above, or None
    # verdicts still needed, at that precision, for an interval of +- `half_width` (at 0.5 when
    # none is reviewed yet: the widest)
    more_verdicts: int
    half_width: float
    lowest_alert: float  # below this score there are no alerts: the threshold cannot go lower
    notes: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def verdicts_needed(precision: float, reviewed: int, half_width: float, level: float = 0.95,
                    most: int = 100_000) -> int:
    """More verdicts, at `precision`, until the exact interval is at most +- `half_width`
    (0 when it already is)."""
    def wide(n: int) -> bool:
        ci = proportion_interval(round(precision * n), n, level)
        return (ci["high"] - ci["low"]) / 2 > half_width

    if reviewed > 0 and not wide(reviewed):
        return 0
    lo, hi = max(reviewed, 1), max(reviewed, 1)
    while wide(hi):  # doubling, then bisection: the width shrinks as n grows
        lo, hi = hi, hi * 2
        if hi > most:
            return most - reviewed
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if wide(mid) else (lo, mid)
    return hi - reviewed


def alert_days(alerts: pd.DataFrame) -> tuple[float, str]:
    """The days `alerts` cover, and from what: the span of their transactions' times when every
    alert has one (at least an hour), else the span of when they were made (at least a day, as
    a store fed by a service makes them as the transactions come)."""
    times = (pd.to_numeric(alerts["event_time"], errors="coerce").to_numpy(dtype="float64")
             if "event_time" in alerts else np.full(len(alerts), np.nan))
    if len(times) and np.isfinite(times).all():
        return max((times.max() - times.min()) / 86_400, 1 / 24), "transaction times"
    created = pd.to_datetime(alerts["created_at"])
    return max((created.max() - created.min()).total_seconds() / 86_400, 1.0), "when the alerts were made"


def advise(alerts: pd.DataFrame, *, precision: float | None = None, per_day: float | None = None,
           half_width: float = 0.05, level: float = 0.95) -> ThresholdAdvice:
    """The threshold for a target `precision` or a budget of `per_day` alerts, from `alerts`
    (columns `score`, `threshold` (the model's when the alert was made), `verdict`: "fraud",
    "legit", "unsure" or None, `created_at`, and `event_time`: the transaction's time in seconds
    or None). The threshold flags exactly the alerts chosen
    (`score > threshold`: halfway to the next lower alert)."""
    if (precision is None) == (per_day is None):
        raise ValueError("give one of precision and per_day")
    if precision is not None and not 0 < precision <= 1:
        raise DataError(f"precision must be in (0, 1]; got {precision}")
    if per_day is not None and per_day <= 0:
        raise DataError(f"alerts per day must be positive; got {per_day}")
    if alerts.empty:
        raise DataError("the store has no alerts for this model")
    scores = alerts["score"].to_numpy(dtype="float64")
    verdict = alerts["verdict"].to_numpy(dtype=object)
    days, days_from = alert_days(alerts)
    order = np.argsort(-scores, kind="stable")
    s, v = scores[order], verdict[order]
    fraud = np.cumsum(v == "fraud")  # at or above s[i], counting down from the highest score
    reviewed = np.cumsum((v == "fraud") | (v == "legit"))
    last_of_score = np.r_[s[1:] != s[:-1], True]  # a threshold takes every alert of its score
    notes = []
    if precision is not None:
        if reviewed[-1] == 0:
            raise DataError("no fraud or legit verdicts yet: review some alerts first")
        ok = last_of_score & (reviewed > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok &= fraud / np.maximum(reviewed, 1) >= precision
        if not ok.any():
            i = int(np.flatnonzero(last_of_score & (reviewed > 0))[0])
            notes.append(f"no threshold reaches precision {precision:g}: even the highest-scored reviewed "
                         "alerts are below it; shown for the highest score")
        else:
            i = int(np.flatnonzero(ok)[-1])  # the lowest such threshold: the most alerts
        rule = f"precision >= {precision:g} among the reviewed alerts"
    else:
        if days_from != "transaction times":
            notes.append(f"not every alert has its transaction's time (a model without a time column, or "
                         f"alerts stored before aedetect kept it): the {days:.1f} days are counted from when "
                         "the alerts were made, which is one day for a file scored at once")
        per_day_at = (np.arange(len(s)) + 1) / days
        ok = last_of_score & (per_day_at <= per_day)
        if not ok.any():
            i = int(np.flatnonzero(last_of_score)[0])
            notes.append(f"even the highest score makes {per_day_at[i]:.1f} alerts a day, over {per_day:g}")
        else:
            i = int(np.flatnonzero(ok)[-1])
        rule = f"at most {per_day:g} alerts a day"
    n, k = int(reviewed[i]), int(fraud[i])
    ci = {**proportion_interval(k, n, level), "level": level} if n else None
    more = verdicts_needed(k / n if n else 0.5, n, half_width, level)  # 0.5: the widest, unknown
    if i < len(s) - 1:  # a row is flagged when its score is over the threshold: between two alerts
        threshold = (s[i] + s[i + 1]) / 2
    else:
        threshold = float(alerts["threshold"].to_numpy(dtype="float64")[order][-1])
        notes.append(f"every alert is above it: it stays the model's threshold ({threshold:.6g}); below it "
                     "there are no alerts, so the verdicts cannot say whether a lower one would do")
    if n < i + 1:
        notes.append(f"{i + 1 - n} of the {i + 1} alerts at or above it have no fraud or legit verdict; the "
                     "precision is that of the reviewed ones (the queue reviews the highest scores first)")
    return ThresholdAdvice(
        threshold=float(threshold), rule=rule, alerts_above=i + 1, alerts_per_day=(i + 1) / days,
        days=days, days_from=days_from,
        reviewed_above=n, fraud_above=k, precision=ci, more_verdicts=more, half_width=half_width,
        lowest_alert=float(s[-1]), notes=notes)
