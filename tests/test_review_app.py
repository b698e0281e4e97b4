"""The review app over SQLite and PostgreSQL: the JSON API's contract and its tokens, pages
behind a session, CSRF on every form, values shown as text, and a verdict that survives the app
being killed (a real server process)."""

import re
import signal

import httpx
import pytest
from contract import schemathesis_failures
from fastapi.testclient import TestClient
from servers import free_port, start_aedetect

from aedetect.review.app import create_review_app
from aedetect.review.store import AlertStore

SCRIPT = "<script>window.__pwned=1</script>"
DROP = "'; DROP TABLE alerts; --"


def alert(i: int, **extra) -> dict:
    return {"transaction_id": f"tx{i}", "transaction": {"transaction_id": f"tx{i}", "merchant": f"shop {i}",
                                                        "amount": 20.0 * i},
            "score": float(10 - i), "threshold": 1.0, "amount": 20.0 * i, "model_id": "m1", "model_version": "v1",
            "reasons": [{"feature": "amount", "reason": "amount 9x the card's usual", "contribution": 3.0},
                        {"feature": "hour", "reason": "hour=3", "contribution": 1.0}],
            "top_reason": "amount", "entity": "card_id=c1", "history": {"card_id.count_1d": 4.0}, **extra}


@pytest.fixture
def setup(review_url):
    store = AlertStore(review_url)
    tokens = {n: store.add_user(n, role, "password1") for n, role in
              [("ann", "analyst"), ("bob", "analyst"), ("lea", "lead")]}
    store.add_alerts([alert(i) for i in range(1, 6)]
                     + [alert(7, transaction={"merchant": SCRIPT, "note": DROP}, transaction_id=DROP)])
    client = TestClient(create_review_app(store))
    yield store, client, {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}
    client.close()
    store.close()


def login(client, name="ann", password="password1") -> str:
    """Log in through the form; returns the session's CSRF token (from a page)."""
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"name": name, "password": password, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/queue").text).group(1)


def test_api_needs_a_valid_token_on_every_route(setup):
    store, client, auth = setup
    routes = [("get", "/api/alerts"), ("post", "/api/alerts/next"), ("get", "/api/alerts/1"),
              ("post", "/api/alerts/1/claim"), ("post", "/api/alerts/1/verdict"), ("post", "/api/alerts/1/reopen"),
              ("post", "/api/alerts/1/assign"), ("get", "/api/alerts/1/history"), ("get", "/api/stats")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YW5uOnBhc3N3b3JkMQ=="}):
            r = client.request(method, path, headers=headers, json={"verdict": "fraud"})
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert store.counts()["open"] == 6  # nothing changed


def test_api_queue_claim_decide_and_history(setup):
    store, client, auth = setup
    listed = client.get("/api/alerts", params={"status": "open", "limit": 3}, headers=auth["ann"]).json()
    assert listed["total"] == 6 and [a["score"] for a in listed["alerts"]] == [9.0, 8.0, 7.0]
    assert {"id", "transaction_id", "score", "status"} <= set(listed["alerts"][0])
    first = client.post("/api/alerts/next", headers=auth["ann"]).json()
    assert first["score"] == 9.0 and first["status"] == "claimed" and first["assignee"] == "ann"
    assert first["transaction"]["merchant"] == "shop 1" and first["reasons"][0]["feature"] == "amount"
    assert client.post(f"/api/alerts/{first['id']}/claim", headers=auth["bob"]).status_code == 409
    r = client.post(f"/api/alerts/{first['id']}/verdict", json={"verdict": "fraud"}, headers=auth["bob"])
    assert r.status_code == 403 and "claimed by ann" in r.json()["detail"]
    r = client.post(f"/api/alerts/{first['id']}/verdict", json={"verdict": "maybe"}, headers=auth["ann"])
    assert r.status_code == 422
    r = client.post(f"/api/alerts/{first['id']}/verdict", json={"verdict": "fraud", "note": "stolen card"},
                    headers=auth["ann"])
    assert r.status_code == 200 and r.json()["verdict"] == "fraud" and r.json()["status"] == "decided"
    assert client.get("/api/alerts", headers=auth["ann"]).json()["total"] == 5  # left the open queue
    assert client.post(f"/api/alerts/{first['id']}/reopen", headers=auth["ann"]).status_code == 403
    assert client.post(f"/api/alerts/{first['id']}/reopen", headers=auth["lea"]).json()["status"] == "open"
    r = client.post(f"/api/alerts/{first['id']}/assign", json={"assignee": "bob"}, headers=auth["lea"])
    assert r.json()["assignee"] == "bob"
    trail = client.get(f"/api/alerts/{first['id']}/history", headers=auth["ann"]).json()["entries"]
    assert [(e["who"], e["what"]) for e in trail] == [
        ("system", "created"), ("ann", "claimed"), ("ann", "decided"), ("lea", "reopened"), ("lea", "assigned")]
    assert trail[2]["before"]["status"] == "claimed" and trail[2]["after"]["note"] == "stolen card"
    assert client.get("/api/alerts/999", headers=auth["ann"]).status_code == 404
    assert client.get("/api/alerts", params={"status": "nope"}, headers=auth["ann"]).status_code == 422
    assert client.get("/api/alerts", params={"status": "any"}, headers=auth["ann"]).json()["total"] == 6
    stats = client.get("/api/stats", headers=auth["ann"]).json()
    assert stats["counts"]["claimed"] == 1 and sum(d["verdicts"] for d in stats["daily"]) == 1


def test_api_contract_holds_under_schemathesis(setup):
    store, client, auth = setup
    failures = schemathesis_failures(client.app, auth["lea"], 5)
    assert not failures, "\n\n".join(failures)


def test_pages_need_a_session_and_forms_a_csrf_token(setup):
    store, client, auth = setup
    for path in ("/queue", "/alerts/1", "/dashboard"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # a bearer token is no session for the pages
    assert client.get("/queue", headers=auth["ann"], follow_redirects=False).status_code == 303
    # the login form itself carries a CSRF token (double submit)
    r = client.post("/login", data={"name": "ann", "password": "password1"}, follow_redirects=False)
    assert r.status_code == 403
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"name": "ann", "password": "wrong", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 401 and "Wrong name or password" in r.text
    csrf = login(client)
    cookie = next(h for h in client.cookies.jar if h.name == "aedetect_session")
    raw = client.post("/login", data={}, follow_redirects=False)  # noqa: F841 - the jar is what matters
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    for path, data in [("/alerts/1/claim", {}), ("/alerts/1/verdict", {"verdict": "fraud"}),
                       ("/queue/next", {}), ("/logout", {})]:
        assert client.post(path, data=data, follow_redirects=False).status_code == 403, path
        assert client.post(path, data={**data, "csrf": "forged"}, follow_redirects=False).status_code == 403
    assert store.counts()["open"] == 6
    r = client.post("/alerts/1/verdict", data={"verdict": "fraud", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/queue?done=1"
    assert store.get(1)["verdict"] == "fraud"
    # log out ends the session
    client.post("/logout", data={"csrf": csrf})
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_repeated_failed_logins_are_refused_for_a_while(setup):
    store, client, auth = setup
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    for _ in range(5):
        r = client.post("/login", data={"name": "bob", "password": "guess", "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 401
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)  # the page's new token
    r = client.post("/login", data={"name": "bob", "password": "password1", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # even the right password, for now
    login(client, "ann")  # another name is not blocked


def test_an_analyst_cannot_decide_another_analysts_claim_in_the_pages(setup):
    store, client, auth = setup
    bob = store.user_by_token(auth["bob"]["Authorization"].split()[1])
    claimed = store.claim_next(bob)
    csrf = login(client, "ann")
    page = client.get(f"/alerts/{claimed['id']}")
    assert 'id="fraud"' not in page.text and "Claimed by bob" in page.text
    r = client.post(f"/alerts/{claimed['id']}/verdict", data={"verdict": "legit", "csrf": csrf})
    assert r.status_code == 403 and "claimed by bob" in r.text
    assert store.get(claimed["id"])["status"] == "claimed"


def test_transaction_values_are_shown_as_text(setup):
    store, client, auth = setup
    login(client)
    target = next(a for a in client.get("/api/alerts", headers=auth["ann"]).json()["alerts"]
                  if a["transaction_id"] == DROP)
    page = client.get(f"/alerts/{target['id']}")
    assert page.status_code == 200
    assert SCRIPT not in page.text and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.text
    assert "&#39;; DROP TABLE alerts; --" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    queue = client.get("/queue")
    assert "&#39;; DROP TABLE alerts; --" in queue.text and store.counts()["open"] == 6
    # a filter value is a parameter, never SQL
    assert client.get("/queue", params={"reason": DROP, "model": "' OR 1=1 --"}).status_code == 200


def test_queue_page_claim_next_and_dashboard(setup):
    store, client, auth = setup
    csrf = login(client, "ann")
    r = client.post("/queue/next", data={"csrf": csrf, "order": "value"}, follow_redirects=False)
    best = max(range(1, 6), key=lambda i: (10 - i) * 20.0 * i)
    got = store.get(int(r.headers["location"].rsplit("/", 1)[1]))
    assert got["transaction_id"] == f"tx{best}" and got["assignee"] == "ann"
    page = client.get(f"/alerts/{got['id']}")
    assert 'id="fraud"' in page.text and "card_id.count_1d" in page.text and "amount 9x the card" in page.text
    client.post(f"/alerts/{got['id']}/verdict", data={"verdict": "legit", "note": "customer confirmed", "csrf": csrf})
    dash = client.get("/dashboard")
    assert dash.status_code == 200 and 'id="daily-plot"' in dash.text
    assert re.search(r'id="verdicts-legit">1<', dash.text)
    queue = client.get("/queue")
    assert re.search(r'id="count-open">5<', queue.text) and f">tx{best}<" not in queue.text


def _start(url: str, port: int):
    return start_aedetect(["review", "--db", url], port, timeout=60)


def test_a_verdict_survives_the_app_being_killed(review_url):
    """The app answered the verdict, then died by SIGKILL between requests: the restarted app
    has it (the transaction committed before the answer), and every verdict in between too."""
    store = AlertStore(review_url)
    token = store.add_user("ann", "analyst", "password1")
    store.add_alerts([alert(i) for i in range(1, 6)])
    store.close()
    port = free_port()
    procs = [_start(review_url, port)]
    try:
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        decided = []
        with httpx.Client(base_url=base, headers=headers) as http:
            for verdict in ("fraud", "legit", "fraud"):
                got = http.post("/api/alerts/next").json()
                r = http.post(f"/api/alerts/{got['id']}/verdict", json={"verdict": verdict})
                assert r.status_code == 200
                decided.append((got["id"], verdict))
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        procs.append(_start(review_url, port))
        with httpx.Client(base_url=base, headers=headers) as http:
            for alert_id, verdict in decided:
                assert http.get(f"/api/alerts/{alert_id}").json()["verdict"] == verdict
            assert http.get("/api/alerts").json()["total"] == 2
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
