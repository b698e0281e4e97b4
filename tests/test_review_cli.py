"""Alerts in and labels out through the commands: `score --alerts`, `serve --alerts` (the
background writer, its /metrics counts, nothing lost on a clean shutdown), `alerts load`,
`alerts export`, `review users add` and `review migrate`, on a model with entity history."""

import sqlite3

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from aedetect.cli.app import app
from aedetect.data.generate import generate_payment_log
from aedetect.review.store import AlertStore

runner = CliRunner()


@pytest.fixture
def cli(monkeypatch, capsys):
    """The console script's way: errors as one line on stderr, an exit status, no traceback."""
    import sys

    from aedetect.cli.app import main

    monkeypatch.delenv("AEDETECT_PASSWORD", raising=False)

    def invoke(*args):
        monkeypatch.setattr(sys, "argv", ["aedetect", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        return code, " ".join(err.split())

    return invoke


def run(*args, env=None):
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def payments(tmp_path_factory):
    """A model with card and terminal history on 14 days of payments, and the 3 days after."""
    d = tmp_path_factory.mktemp("review_cli")
    log = generate_payment_log(n_days=17, n_cards=200, n_terminals=40, seed=3)
    t = pd.to_datetime(log["timestamp"])
    log[t < pd.Timestamp("2024-03-15")].to_csv(d / "train.csv", index=False)
    log[t >= pd.Timestamp("2024-03-15")].to_csv(d / "new.csv", index=False)
    run("train", "--data", d / "train.csv", "--out", d / "model", "--entity-columns", "card_id,terminal_id",
        "--exclude-columns", "fraud_kind,transaction_id", "--epochs", "2", "--overwrite")
    return d


def _every_alert(store, **where):
    """Every alert, page by page (the store answers at most 1,000 a page)."""
    alerts, total = [], None
    while total is None or len(alerts) < total:
        page, total = store.list_alerts(limit=1000, offset=len(alerts), **where)
        if not page:
            break
        alerts += page
    return alerts, total


def test_score_writes_every_flagged_row_once(payments, tmp_path):
    url = f"sqlite:///{tmp_path}/alerts.db"
    args = ["score", "--model", payments / "model", "--data", payments / "new.csv", "--id-columns",
            "transaction_id", "--alerts", url]
    first = run(*args, "--out", tmp_path / "a.csv").output
    scored = pd.read_csv(tmp_path / "a.csv", dtype={"transaction_id": str})
    flagged = scored[scored["flag"] == 1]
    assert len(flagged) > 0 and f"alerts: {len(flagged):,} new" in first
    again = run(*args, "--out", tmp_path / "b.csv").output
    assert "alerts: 0 new" in again and f"{len(flagged):,} already there" in again
    store = AlertStore(url)
    alerts, total = _every_alert(store, status="open")
    assert total == len(flagged)
    assert {a["transaction_id"] for a in alerts} == set(flagged["transaction_id"])
    one = store.get(alerts[0]["id"])
    row = scored.set_index("transaction_id").loc[one["transaction_id"]]
    assert one["score"] == pytest.approx(row["score"]) and one["threshold"] > 0
    assert one["model_id"] == "model" and len(one["model_version"]) == 12
    assert one["reasons"][0]["feature"] == row["top1_feature"]
    assert one["entity"].startswith("card_id=c") and one["amount"] == pytest.approx(float(one["transaction"]["amount"]))
    assert "card_id.count_1d" in one["history"] and "terminal_id.amount_z_30d" in one["history"]
    assert set(one["transaction"]) >= {"transaction_id", "timestamp", "card_id", "terminal_id", "amount"}
    # each alert keeps when its transaction happened (the rates per day of `alerts threshold`)
    with store.engine.connect() as c:
        kept = dict(c.execute(text("SELECT transaction_id, event_time FROM alerts")).all())
    new = pd.read_csv(payments / "new.csv", dtype={"transaction_id": str}).set_index("transaction_id")
    when = (pd.to_datetime(new["timestamp"]) - pd.Timestamp("1970-01-01")).dt.total_seconds()
    assert kept == pytest.approx(when.loc[list(kept)].to_dict())
    store.close()


def test_alerts_load_from_a_scored_file_and_from_the_writer_fallback(payments, tmp_path):
    run("score", "--model", payments / "model", "--data", payments / "new.csv", "--all-columns",
        "--out", tmp_path / "all.csv")
    url = f"sqlite:///{tmp_path}/alerts.db"
    out = run("alerts", "load", "--db", url, "--scored", tmp_path / "all.csv", "--model", payments / "model").output
    flagged = int(pd.read_csv(tmp_path / "all.csv")["flag"].sum())
    assert f"{flagged:,} new alert(s)" in out
    # the ids were read as text (tx00000123 stays as written) and a card is never taken for the id
    store = AlertStore(url)
    ids = [a["transaction_id"] for a in _every_alert(store)[0]]
    assert all(i.startswith("tx") for i in ids) and len(set(ids)) == flagged
    assert "0 new alert(s)" in run("alerts", "load", "--db", url, "--scored", tmp_path / "all.csv",
                                   "--model", payments / "model").output



def test_mistakes_get_one_clear_line(payments, tmp_path, cli):
    url = f"sqlite:///{tmp_path}/alerts.db"
    code, err = cli("alerts", "load", "--db", url, "--scored", tmp_path / "none.csv", "--threshold", "1")
    assert code == 1 and "none.csv" in err
    code, err = cli("alerts", "load", "--db", url, "--scored", payments / "new.csv")
    assert code == 2 and "pass --model" in err
    base = ["score", "--model", payments / "model", "--data", payments / "new.csv", "--out", tmp_path / "s.csv"]
    code, err = cli(*base, "--alerts", "not a url")
    assert code == 1 and "not a database URL" in err
    code, err = cli(*base, "--alerts", f"sqlite:///{tmp_path}/no/such/dir/a.db")
    assert code == 1 and "does not exist" in err
    code, err = cli("review", "users", "add", "ann", "--db", url)
    assert code == 2 and "AEDETECT_PASSWORD" in err


def test_serve_alerts_are_written_in_the_background_and_counted(payments, tmp_path):
    from aedetect.serving.app import ServiceSettings, create_app

    url = f"sqlite:///{tmp_path}/alerts.db"
    new = pd.read_csv(payments / "new.csv", dtype={"transaction_id": str}).head(400)
    tx = [{"id": r.transaction_id, "timestamp": r.timestamp, "card_id": r.card_id, "terminal_id": r.terminal_id,
           "amount": r.amount} for r in new.itertuples()]
    flagged = []
    api = create_app(payments / "model", ServiceSettings(alerts=url))
    with TestClient(api) as client:
        for i in range(0, len(tx), 50):
            got = client.post("/v1/score", json={"transactions": tx[i:i + 50]}).json()["results"]
            flagged += [r["id"] for r in got if r["flag"]]
        metrics = client.get("/metrics").text
        assert "aedetect_alerts_pending" in metrics and "aedetect_alert_write_failures_total 0.0" in metrics
    # the lifespan's end (a clean shutdown) wrote whatever was still queued
    assert flagged and api.state.alerts.written == len(flagged) and api.state.alerts.pending == 0
    store = AlertStore(url)
    alerts, total = store.list_alerts(limit=1000)
    assert total == len(flagged) and {a["transaction_id"] for a in alerts} == set(flagged)
    one = store.get(alerts[0]["id"])
    assert one["transaction"]["id"] == one["transaction_id"] and "card_id.count_1d" in one["history"]
    assert one["reasons"] and one["entity"].startswith("card_id=")
    store.close()


def test_users_add_export_and_migrate(tmp_path):
    url = f"sqlite:///{tmp_path}/alerts.db"
    out = run("review", "migrate", "--db", url, "--revision", "0001").output
    assert "revision 0001 (was empty)" in out
    assert "revision 0003 (was 0001)" in run("review", "migrate", "--db", url).output
    added = run("review", "users", "add", "ann", "--role", "lead", "--db", url, env={"AEDETECT_PASSWORD": "password1"})
    token = added.stdout.strip().splitlines()[-1]
    store = AlertStore(url)
    lead = store.user_by_token(token)
    assert lead.name == "ann" and lead.role == "lead"
    store.add_alerts([{"transaction_id": f"t{i}", "transaction": {}, "score": 2.0 + i, "threshold": 1.0,
                       "amount": None, "model_id": "m", "model_version": "v", "reasons": [], "top_reason": None,
                       "entity": None, "history": None} for i in range(3)])
    for verdict in ("fraud", "legit", "unsure"):
        store.decide(store.claim_next(lead)["id"], lead, verdict)
    out = run("alerts", "export", "--db", url, "--out", tmp_path / "labels.csv").output
    assert "wrote 2 label(s) (1 fraud)" in out
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert labels.set_index("transaction_id")["label"].to_dict() == {"t2": 1, "t1": 0}
    assert set(labels["decided_by"]) == {"ann"}
    with sqlite3.connect(tmp_path / "alerts.db") as c:
        assert c.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 3
    store.close()


def test_alerts_threshold_refuses_mistakes_in_one_line(cli, tmp_path):
    missing = f"sqlite:///{tmp_path}/none.db"
    code, err = cli("alerts", "threshold", "--db", missing, "--precision", "0.9")
    assert code == 2 and "no such database file" in err and not (tmp_path / "none.db").exists()
    code, err = cli("alerts", "threshold", "--db", missing)
    assert code == 2 and err == "error: give one of --precision and --alerts-per-day"
