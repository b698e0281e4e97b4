"""Thresholds from verdicts (`aedetect.review.thresholds`, `aedetect alerts threshold`): worked
by hand on ten alerts, then end to end through a review store (SQLite, and PostgreSQL when the
test run has one)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from aedetect.cli.app import app
from aedetect.errors import DataError
from aedetect.model.uncertainty import proportion_interval
from aedetect.review.thresholds import advise, verdicts_needed

# Ten alerts over two days, scores 10 down to 1 (the model's threshold 0.5). From the top, the
# precision of the reviewed ones: 1/1, 2/2, 2/3, 3/4, 4/5, 4/6, 4/6, 4/6 (unsure is no verdict),
# 4/7, 4/7.
VERDICTS = ["fraud", "fraud", "legit", "fraud", "fraud", "legit", None, "unsure", "legit", None]
T0 = datetime(2026, 3, 1)


def ten_alerts() -> pd.DataFrame:
    return pd.DataFrame({"score": [float(10 - i) for i in range(10)], "threshold": 0.5, "verdict": VERDICTS,
                         "created_at": [T0 + timedelta(hours=48 * i / 9) for i in range(10)]})


def test_a_precision_takes_the_lowest_threshold_that_holds_it():
    a = advise(ten_alerts(), precision=0.75)
    # 0.8 at score 6 (4 of 5 reviewed), 0.667 at 5: the threshold sits between 6 and 5
    assert a.threshold == 5.5 and a.alerts_above == 5 and (a.reviewed_above, a.fraud_above) == (5, 4)
    assert a.alerts_per_day == 2.5  # 5 alerts over the store's 2 days
    assert a.precision == {**proportion_interval(4, 5), "level": 0.95}
    assert a.more_verdicts == verdicts_needed(0.8, 5, 0.05)


def test_a_budget_takes_the_lowest_threshold_within_it():
    a = advise(ten_alerts(), per_day=2)
    assert a.threshold == 6.5 and a.alerts_above == 4 and (a.reviewed_above, a.fraud_above) == (4, 3)


def test_a_budget_counts_the_days_its_transactions_span():
    """A week's file scored at once makes its alerts within a second: a day's budget reads the
    days of the transactions (event_time), and says so when an alert has no such time."""
    week = ten_alerts().assign(created_at=T0, event_time=[i * 5 * 86_400 / 9 for i in range(10)])
    a = advise(week, per_day=1)
    assert (a.days, a.days_from) == (5.0, "transaction times")
    assert a.alerts_above == 5 and a.threshold == 5.5 and a.alerts_per_day == 1.0 and a.notes == []
    week.loc[3, "event_time"] = None  # one alert stored before its time was kept
    old = advise(week, per_day=1)
    assert (old.days, old.days_from) == (1.0, "when the alerts were made") and old.alerts_above == 1
    assert any("counted from when the alerts were made" in n for n in old.notes)
    assert advise(ten_alerts(), per_day=2).days == 2.0  # no event_time column: the store's two days


def test_what_the_verdicts_cannot_say_is_said():
    every = advise(ten_alerts(), per_day=100)  # all ten: the model's own threshold stays
    assert every.threshold == 0.5 and every.alerts_above == 10 and every.reviewed_above == 7
    assert any("below it there are no alerts" in n for n in every.notes)
    assert any("3 of the 10 alerts" in n for n in every.notes)  # two undecided, one unsure
    unreachable = advise(ten_alerts(), precision=1.0)
    assert unreachable.threshold == 8.5 and unreachable.notes == []  # 2 of 2 at score 9
    nothing = ten_alerts().assign(verdict=None)
    with pytest.raises(DataError, match="no fraud or legit verdicts yet"):
        advise(nothing, precision=0.9)


def test_tied_scores_stay_together():
    alerts = ten_alerts()
    alerts.loc[4, "score"] = 7.0  # the 5th alert ties the 4th
    a = advise(alerts, per_day=2)  # 4 alerts (2 a day) would split the tie at 7: 3 it is
    assert a.alerts_above == 3 and a.threshold == 7.5
    assert advise(alerts, per_day=2.5).alerts_above == 5  # both of the tie


def test_verdicts_needed_is_the_first_count_narrow_enough():
    more = verdicts_needed(0.8, 5, 0.05)
    n = 5 + more

    def half(m):
        ci = proportion_interval(round(0.8 * m), m)
        return (ci["high"] - ci["low"]) / 2

    assert half(n) <= 0.05 < half(n - 1)
    assert verdicts_needed(0.8, n, 0.05) == 0


def _store(url: str):
    from aedetect.review.store import AlertStore

    store = AlertStore(url)
    lead = store.user_by_token(store.add_user("lea", "lead", "password1"))
    store.add_alerts([{"transaction_id": f"tx{i}", "transaction": {}, "score": float(10 - i), "threshold": 0.5,
                       "amount": None, "model_id": "m", "model_version": "v", "reasons": [], "top_reason": None,
                       "entity": None, "history": None} for i in range(10)])
    while (a := store.claim_next(lead)) is not None:  # highest score first
        i = int(a["transaction_id"][2:])
        if VERDICTS[i] is not None:  # else left claimed, undecided
            store.decide(a["id"], lead, VERDICTS[i], "checked")
    return store


def test_the_command_reads_the_store_and_answers(review_url):
    _store(review_url)
    res = CliRunner().invoke(app, ["alerts", "threshold", "--db", review_url, "--precision", "0.75"])
    assert res.exit_code == 0, res.output
    assert "threshold 5.5 (precision >= 0.75" in res.output and "0.800 (95% interval 0.284-0.995)" in res.output
    res = CliRunner().invoke(app, ["alerts", "threshold", "--db", review_url, "--alerts-per-day", "1000", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["threshold"] == 0.5 and got["alerts_above"] == 10 and got["reviewed_above"] == 7
