"""The review store on SQLite and on a real PostgreSQL server: alerts in once, claims that never
collide under concurrency, the rules of who decides what, an audit log the database itself keeps
append-only, migrations from empty and from the previous schema, labels out, and the service's
background writer."""

import json
import threading

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from aedetect.errors import AedetectError
from aedetect.review.store import HEAD, AlertStore, ReviewError, make_engine, revision_of, upgrade


def alert(i: int, **extra) -> dict:
    return {"transaction_id": f"tx{i:06d}", "transaction": {"transaction_id": f"tx{i:06d}", "amount": 10.0 + i,
                                                            "merchant": f"shop {i % 7}"},
            "score": 1.0 + (i * 7919 % 1000) / 100, "threshold": 1.0, "amount": 10.0 + i, "model_id": "m1",
            "model_version": "abc", "reasons": [{"feature": "amount", "reason": "high", "contribution": 0.5}],
            "top_reason": "amount", "entity": f"card_id=c{i % 5}", "history": None, **extra}


@pytest.fixture
def store(review_url):
    s = AlertStore(review_url)
    yield s
    s.close()


def users(store):
    tokens = {n: store.add_user(n, role, "password1") for n, role in
              [("ann", "analyst"), ("bob", "analyst"), ("lea", "lead")]}
    return {n: store.user_by_token(t) for n, t in tokens.items()}


def test_the_same_transaction_flagged_twice_is_one_alert(store):
    assert store.add_alerts([alert(i) for i in range(10)]) == 10
    assert store.add_alerts([alert(i) for i in range(5, 15)]) == 5
    assert store.counts() == {"open": 15, "claimed": 0, "decided": 0}
    # values reach the database as parameters, never as SQL
    nasty = alert(99, transaction={"merchant": "'; DROP TABLE alerts; --", "note": "<script>x()</script>"},
                  transaction_id="'; DELETE FROM alerts; --")
    assert store.add_alerts([nasty]) == 1
    rows, total = store.list_alerts(status="open", limit=1000)
    assert total == 16
    found = next(a for a in rows if a["transaction_id"] == "'; DELETE FROM alerts; --")
    got = store.get(found["id"])
    assert got["transaction"]["merchant"] == "'; DROP TABLE alerts; --"
    assert got["transaction"]["note"] == "<script>x()</script>"


def test_queue_order_and_filters(store):
    store.add_alerts([alert(i) for i in range(30)] + [alert(100, model_id="m2", top_reason="hour")])
    by_score, total = store.list_alerts(status="open", limit=5)
    assert total == 31 and [a["score"] for a in by_score] == sorted((a["score"] for a in by_score), reverse=True)
    top_score = max(alert(i)["score"] for i in [*range(30), 100])
    assert by_score[0]["score"] == top_score
    by_value, _ = store.list_alerts(status="open", order="value", limit=1)
    assert by_value[0]["transaction_id"] == max([alert(i) for i in [*range(30), 100]],
                                                key=lambda a: a["score"] * a["amount"])["transaction_id"]
    assert store.list_alerts(model="m2")[1] == 1 and store.list_alerts(reason="hour")[1] == 1
    assert store.facets() == {"models": ["m1", "m2"], "reasons": ["amount", "hour"]}
    # a page over many alerts counts up to a cap, then says so (cap + 1)
    assert store.list_alerts(status="open", count_cap=10)[1] == 11 and store.counts(cap=10)["open"] == 11
    assert store.list_alerts(model="m2", count_cap=10)[1] == 1 and store.counts(cap=10)["claimed"] == 0
    with pytest.raises(ReviewError, match="order must be one of"):
        store.list_alerts(order="amount; DROP TABLE alerts")


def test_concurrent_claims_never_share_an_alert(store):
    """1,000 alerts, 8 threads claiming the next one until none is left: every alert claimed
    exactly once (PostgreSQL: SKIP LOCKED; SQLite: BEGIN IMMEDIATE)."""
    store.add_alerts([alert(i) for i in range(1000)])
    who = [store.user_by_token(store.add_user(f"u{k}", "analyst", "password1")) for k in range(8)]
    claimed: dict[int, list] = {k: [] for k in range(8)}
    errors = []

    def work(k):
        try:
            while (got := store.claim_next(who[k])) is not None:
                claimed[k].append(got["id"])
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    ids = [i for k in claimed for i in claimed[k]]
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert sum(bool(v) for v in claimed.values()) >= 2  # the threads really competed
    assert store.counts() == {"open": 0, "claimed": 1000, "decided": 0}
    # each alert's assignee is the thread that got it
    rows, _ = store.list_alerts(status="claimed", limit=1000)
    owner = {i: who[k].name for k in claimed for i in claimed[k]}
    assert all(a["assignee"] == owner[a["id"]] for a in rows)


def test_who_may_decide_what(store):
    u = users(store)
    store.add_alerts([alert(i) for i in range(4)])
    a = store.claim_next(u["ann"])
    with pytest.raises(ReviewError, match="claimed by ann") as refused:
        store.decide(a["id"], u["bob"], "fraud")
    assert refused.value.status == 403
    with pytest.raises(ReviewError) as taken:
        store.claim(a["id"], u["bob"])
    assert taken.value.status == 409
    assert store.decide(a["id"], u["ann"], "fraud", "card reported stolen")["verdict"] == "fraud"
    with pytest.raises(ReviewError, match="already decided"):
        store.decide(a["id"], u["ann"], "legit")
    for action in (lambda: store.reopen(a["id"], u["ann"]), lambda: store.assign(a["id"], u["ann"], "bob")):
        with pytest.raises(ReviewError, match="only a lead") as e:
            action()
        assert e.value.status == 403
    # a lead reopens, reassigns, and may decide another's claim
    assert store.reopen(a["id"], u["lea"])["status"] == "open"
    assert store.assign(a["id"], u["lea"], "bob")["assignee"] == "bob"
    assert store.decide(a["id"], u["lea"], "legit")["verdict"] == "legit"
    with pytest.raises(ReviewError, match="verdict must be one of"):
        store.decide(2, u["ann"], "maybe")
    with pytest.raises(ReviewError) as missing:
        store.get(12345)
    assert missing.value.status == 404
    trail = store.audit(a["id"])
    assert [e["what"] for e in trail] == ["created", "claimed", "decided", "reopened", "assigned", "decided"]
    assert [e["who"] for e in trail] == ["system", "ann", "ann", "lea", "lea", "lea"]
    assert trail[2]["before"]["status"] == "claimed" and trail[2]["after"]["verdict"] == "fraud"
    assert trail[2]["after"]["note"] == "card reported stolen"
    assert [v["verdict"] for v in store.verdicts(a["id"])] == ["fraud", "legit"]


def test_the_audit_log_is_append_only_in_the_database(store):
    users(store)
    store.add_alerts([alert(1)])
    with store.engine.connect() as c:
        for statement in ("UPDATE audit SET action = 'x'", "DELETE FROM audit"):
            with pytest.raises(DBAPIError, match="append-only"):
                c.execute(text(statement))
            c.rollback()
    assert [e["what"] for e in store.audit(1)] == ["created"]


def test_labels_out(store):
    u = users(store)
    store.add_alerts([alert(i) for i in range(5)])
    for verdict in ("fraud", "legit", "unsure", "fraud"):
        got = store.claim_next(u["ann"])
        store.decide(got["id"], u["ann"], verdict)
    labels = store.labels()
    assert list(labels.columns) == ["transaction_id", "label", "decided_at", "decided_by", "model_id"]
    assert len(labels) == 3 and labels["label"].tolist().count(1) == 2  # unsure is no label
    assert set(labels["decided_by"]) == {"ann"}
    days = store.daily(2)  # two days: the test may cross midnight UTC
    assert sum(d["alerts"] for d in days) == 5 and sum(d["verdicts"] for d in days) == 4
    assert sum(d["fraud"] for d in days) == 2 and sum(d["legit"] for d in days) == 1
    for d in days:
        judged = d["fraud"] + d["legit"]
        assert d["precision"] == (pytest.approx(d["fraud"] / judged) if judged else None)


def test_users_passwords_tokens_and_sessions(store):
    token = store.add_user("ann", "analyst", "correct horse")
    with pytest.raises(ReviewError, match="already exists"):
        store.add_user("ann", "lead", "another one")
    with pytest.raises(ReviewError, match="role must be one of"):
        store.add_user("bob", "boss", "password1")
    with pytest.raises(ReviewError, match="at least 8"):
        store.add_user("bob", "analyst", "short")
    assert store.user_by_token(token).name == "ann" and store.user_by_token("wrong") is None
    with store.engine.connect() as c:  # neither the password nor the token is stored
        row = c.execute(text("SELECT password_hash, token_hash FROM users")).one()
    assert row[0].startswith("$argon2id$") and "correct horse" not in row[0] and token not in row[1]
    assert store.login("ann", "wrong password") is None and store.login("nobody", "x" * 8) is None
    cookie, csrf = store.login("ann", "correct horse")
    user, same_csrf = store.session_user(cookie)
    assert user.name == "ann" and same_csrf == csrf
    store.logout(cookie)
    assert store.session_user(cookie) is None


def test_migrations_from_empty_and_from_the_previous_schema(review_url):
    """0001 (the first schema) holding alerts, users and verdicts, upgraded to the head: the
    data stays, the new columns are filled, and the tables then match the ORM's description."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from aedetect.review.tables import Base

    engine = make_engine(review_url)
    assert revision_of(engine) is None
    upgrade(engine, "0001")
    assert revision_of(engine) == "0001"
    with engine.begin() as c:
        c.execute(text("INSERT INTO users (name, role, password_hash, token_hash, active, created_at) "
                       "VALUES ('ann', 'analyst', 'x', 'y', true, '2026-01-01')"))
        c.execute(text("INSERT INTO alerts (transaction_id, \"transaction\", score, threshold, amount, model_id, "
                       "model_version, reasons, created_at, status) VALUES "
                       "('t1', '{}', 2.0, 1.0, 50.0, 'm', 'v', '[]', '2026-01-01', 'open'), "
                       "('t2', '{}', 3.0, 1.0, NULL, 'm', 'v', '[]', '2026-01-01', 'decided')"))
        c.execute(text("INSERT INTO verdicts (alert_id, user_id, verdict, note, decided_at) "
                       "VALUES (2, 1, 'fraud', '', '2026-01-02')"))
    store = AlertStore(review_url)  # migrates to the head
    assert revision_of(store.engine) == HEAD
    rows, total = store.list_alerts(status=None, order="value")
    assert total == 2 and {a["transaction_id"]: a["score"] for a in rows} == {"t1": 2.0, "t2": 3.0}
    assert rows[0]["transaction_id"] == "t1"  # priority 2 x 50 filled by the migration, above 3 x 1
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == [], diff
    # and back: the downgrades keep the 0001 data, and the upgrade after it works again
    from alembic import command
    from alembic.config import Config

    from aedetect.review.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as c:
        config.attributes["connection"] = c
        command.downgrade(config, "0001")
    assert revision_of(store.engine) == "0001"
    upgrade(store.engine)
    assert AlertStore(review_url, migrate=False).list_alerts(status=None)[1] == 2
    store.close()
    engine.dispose()


def test_a_bad_url_or_a_missing_server_is_a_clear_error(tmp_path):
    with pytest.raises(AedetectError, match="not a database URL"):
        AlertStore("alerts.db")
    with pytest.raises(AedetectError, match="not supported"):
        AlertStore("mysql://x@localhost/db")
    with pytest.raises(AedetectError, match="does not exist"):
        AlertStore(f"sqlite:///{tmp_path}/no/such/folder/a.db")
    with pytest.raises(AedetectError, match="cannot open the review store"):
        AlertStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
    # an old schema is refused by the app's store (migrate=False) with the command to run
    old = f"sqlite:///{tmp_path}/old.db"
    upgrade(make_engine(old), "0001")
    with pytest.raises(AedetectError, match="aedetect review migrate"):
        AlertStore(old, migrate=False)


def test_the_writer_writes_everything_and_keeps_what_the_database_refused(store, tmp_path):
    from aedetect.review.writer import AlertWriter, read_fallback

    w = AlertWriter(store, batch=50, interval_s=0.01, max_pending=100, put_timeout=0.001)
    w.put([alert(i) for i in range(300)])  # more than the queue holds: the rest waits aside
    w.put([alert(i) for i in range(10)])  # already flagged: duplicates, not new alerts
    assert w.close() == 0
    assert store.counts()["open"] == 300 and w.written == 300 and w.duplicates == 10 and w.pending == 0

    class Down:
        def add_alerts(self, rows):
            raise OSError("connection refused")

    fallback = tmp_path / "unwritten.jsonl"
    w = AlertWriter(Down(), interval_s=0.01, fallback=fallback)
    w.put([alert(i) for i in range(1000, 1020)])
    assert w.close(timeout_s=0.3) == 20 and w.failures >= 1
    back = read_fallback(fallback)
    assert [a["transaction_id"] for a in back] == [alert(i)["transaction_id"] for i in range(1000, 1020)]
    assert store.add_alerts(back) == 20  # `aedetect alerts load --scored unwritten.jsonl`
    assert json.loads(fallback.read_text().splitlines()[0])["reasons"][0]["feature"] == "amount"


def test_sqlite_file_is_created_where_asked(tmp_path):
    url = f"sqlite:///{tmp_path}/team.db"
    AlertStore(url).close()
    assert (tmp_path / "team.db").is_file()
    engine = create_engine(url)
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    engine.dispose()


def test_a_row_without_an_id_is_named_by_its_values():
    from aedetect.review.alerts import AlertSource

    source = AlertSource("m", "v", 1.0, id_column="transaction_id", amount_column="amount",
                         entity_columns=("card_id",))
    row = {"card_id": "c1", "amount": "12.50", "merchant": "shop"}
    a, b = source.alert(dict(row), 2.0, []), source.alert(dict(row, transaction_id=""), 2.0, [])
    assert a["transaction_id"].startswith("sha256:") and len(a["transaction_id"]) == 31
    assert a["transaction_id"] == source.alert(dict(row), 3.0, [])["transaction_id"]
    assert b["transaction_id"] != a["transaction_id"]  # its values differ (the empty id is one)
    assert a["amount"] == 12.5 and a["entity"] == "card_id=c1" and a["top_reason"] is None
    assert source.alert(dict(row, transaction_id="tx9"), 2.0, [])["transaction_id"] == "tx9"
