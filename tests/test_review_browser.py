"""The review app in a real headless browser (Chromium, driven by Playwright) against a real server
(`aedetect review` in a subprocess) over a SQLite store filled by `aedetect score --alerts` from a
generated payments log and a small model trained on it.

An analyst logs in (a wrong password first), claims the next alert with the key n, decides it
with the key f, sees it leave the open queue and arrive on the dashboard; opens alerts by their
links and decides them by keyboard; a transaction value `<script>...` shows as text and never runs,
one `'; DROP TABLE alerts; --` shows as text and the store goes on working; the console stays clean.

Screenshots (login, queue, alert, dashboard) go to $AEDETECT_ARTIFACTS (default: the test's
tmp_path/screenshots) and, with AEDETECT_DOCS_SCREENSHOTS=1, to docs/images/review-*.png.

Slow: needs the `chromium` Debian package (`apt-get install chromium`) and the playwright Python
package (in the dev extra; no browser download: it drives /usr/bin/chromium)."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
from servers import free_port

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the dev extra is not installed
    sync_playwright = None

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
SCRIPT = "<script>window.__pwned=1</script>"
DROP = "'; DROP TABLE alerts; --"
PASSWORD = "correct horse battery"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
MAX_PNG_BYTES = 300_000

needs_browser = pytest.mark.skipif(
    sync_playwright is None or not os.access(CHROMIUM, os.X_OK),
    reason="needs the playwright package (pip install -e '.[dev]') and Chromium at /usr/bin/chromium "
           "(apt-get install chromium)")


def cli(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "aedetect.cli", *map(str, args)], capture_output=True,
                          text=True, env=env or ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """A review store filled the way a team fills it: a payments log, a small model trained on it
    with entity history, new transactions (no labels) scored with --alerts. Then two alerts copied
    from real ones whose transaction carries hostile values, ranked 30th and 31st by score."""
    from aedetect.data.generate import generate_payment_log
    from aedetect.review.store import AlertStore

    work = tmp_path_factory.mktemp("review")
    log = generate_payment_log(n_days=30, n_cards=500, n_terminals=100, seed=0)
    log.to_csv(work / "payments.csv", index=False)
    log.drop(columns=["is_fraud", "fraud_kind"]).to_csv(work / "new.csv", index=False)
    cli("train", "--data", work / "payments.csv", "--out", work / "payments-model", "--epochs", 3,
        "--entity-columns", "card_id,terminal_id", "--exclude-columns", "fraud_kind,transaction_id")
    url = f"sqlite:///{work / 'alerts.db'}"
    cli("score", "--model", work / "payments-model", "--data", work / "new.csv", "--out", work / "scored.csv",
        "--id-columns", "transaction_id", "--alerts", url)

    store = AlertStore(url)
    real, total = store.list_alerts(status="open", limit=1000)
    assert total >= 32, f"only {total} alerts: the ranks below need more"
    hostile = []
    for n, (value, below) in enumerate([(SCRIPT, real[29]), (DROP, real[30])]):
        a = store.get(below["id"])
        tx = {**a["transaction"], "transaction_id": value, "merchant": value}
        hostile.append({k: a[k] for k in ("threshold", "amount", "model_id", "model_version", "reasons",
                                          "top_reason", "history")}
                       | {"transaction_id": value, "transaction": tx, "score": a["score"] + 1e-6 * (2 - n),
                          "entity": f"merchant={value}"})
    assert store.add_alerts(hostile) == 2
    store.close()
    return url


@pytest.fixture(scope="module")
def site(store_url, tmp_path_factory):
    """`aedetect review` on a free port, with an analyst (ana) and a lead (lee, whose API token
    is kept); yields the base URL and the lead's token."""
    env = {**ENV, "AEDETECT_PASSWORD": PASSWORD}
    cli("review", "users", "add", "ana", "--role", "analyst", "--db", store_url, env=env)
    token = cli("review", "users", "add", "lee", "--role", "lead", "--db", store_url, env=env).strip().splitlines()[-1]
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen([sys.executable, "-m", "aedetect.cli", "review", "--db", store_url,
                                   "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=sink, stderr=subprocess.STDOUT, env=ENV)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, f"the review app exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"the review app did not answer: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def api(base, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def shots_folders(tmp_path) -> list[Path]:
    folders = [Path(os.environ.get("AEDETECT_ARTIFACTS") or tmp_path / "screenshots")]
    if os.environ.get("AEDETECT_DOCS_SCREENSHOTS") == "1":
        folders.append(DOCS_IMAGES)
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    return folders


def screenshot(page, folders, name):
    first = folders[0] / f"review-{name}.png"
    page.screenshot(path=str(first))  # the viewport, 1280x800
    size = first.stat().st_size
    assert size < MAX_PNG_BYTES, f"{first} is {size:,} bytes"
    for f in folders[1:]:
        shutil.copyfile(first, f / first.name)


def count(page, status):
    return int(page.text_content(f"#count-{status}"))


def row(page, alert_id):
    return page.locator(f'#queue tr[data-alert="{alert_id}"]')


@needs_browser
def test_review_loop_in_headless_chromium(site, tmp_path):
    base, token = site
    folders = shots_folders(tmp_path)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text} ({m.location.get('url')})")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.set_default_timeout(15_000)

            # -- login: a page asks for it; a wrong password is refused, the right one lands on the queue
            page.goto(base + "/queue")
            assert page.url.startswith(base + "/login")
            page.fill("#name", "ana")
            screenshot(page, folders, "login")
            page.fill("#password", "not the password")
            page.click("#login")
            page.wait_for_selector("#login-failed")
            assert "Wrong name or password" in page.text_content("#login-failed")
            # the refused login answers 401, which Chromium logs as a failed load: that one is expected
            assert len(errors) == 1 and "status of 401" in errors[0] and errors[0].endswith(f"({base}/login)"), errors
            errors.clear()
            page.fill("#name", "ana")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.wait_for_url(base + "/queue")
            cookie = next(c for c in page.context.cookies() if c["name"] == "aedetect_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            # -- the queue: every alert open, the highest score first
            opened = count(page, "open")
            assert opened == api(base, token, "GET", "/api/alerts?status=open&limit=1")["total"] >= 32
            top = api(base, token, "GET", "/api/alerts?status=open&limit=1")["alerts"][0]
            first_row = page.locator("#queue tr[data-alert]").first
            assert first_row.get_attribute("data-alert") == str(top["id"])

            # -- n claims the next alert (the top one); f decides it fraud
            page.keyboard.press("n")
            page.wait_for_url(f"{base}/alerts/{top['id']}")
            assert page.text_content("#status") == "claimed"
            assert page.text_content("#transaction").count(top["transaction_id"]) == 1
            assert page.locator("#contributions tr").count() > 1
            screenshot(page, folders, "alert")
            page.keyboard.press("f")
            page.wait_for_url(f"{base}/queue?done={top['id']}")
            assert "decided" in page.text_content("#flash") and "fraud" in page.text_content("#flash")
            assert count(page, "open") == opened - 1 and count(page, "decided") == 1
            assert row(page, top["id"]).count() == 0
            screenshot(page, folders, "queue")

            # -- a script in a transaction value: shown as text in the queue and on its page, never run
            hostile = {a["transaction_id"]: a["id"] for a in
                       api(base, token, "GET", "/api/alerts?status=open&limit=1000")["alerts"]
                       if a["transaction_id"] in (SCRIPT, DROP)}
            assert set(hostile) == {SCRIPT, DROP}
            assert row(page, hostile[SCRIPT]).locator("td").nth(1).text_content() == SCRIPT
            row(page, hostile[SCRIPT]).locator("a").click()
            page.wait_for_url(f"{base}/alerts/{hostile[SCRIPT]}")
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.locator("#transaction td", has_text=SCRIPT).count() == 2  # transaction_id, merchant
            assert SCRIPT in page.text_content("h2")
            assert page.locator("script:not([nonce])").count() == 0
            page.keyboard.press("u")
            page.wait_for_url(f"{base}/queue?done={hostile[SCRIPT]}")
            assert SCRIPT in page.text_content("#flash") and "unsure" in page.text_content("#flash")
            assert page.evaluate("typeof window.__pwned") == "undefined"

            # -- '; DROP TABLE alerts; --: shown as it is; deciding it leaves every other alert in place
            assert row(page, hostile[DROP]).locator("td").nth(1).text_content() == DROP
            row(page, hostile[DROP]).locator("a").click()
            page.wait_for_url(f"{base}/alerts/{hostile[DROP]}")
            assert page.locator("#transaction td", has_text=DROP).count() == 2
            page.keyboard.press("l")
            page.wait_for_url(f"{base}/queue?done={hostile[DROP]}")
            assert DROP in page.text_content("#flash") and "legit" in page.text_content("#flash")
            assert count(page, "open") == opened - 3 and count(page, "decided") == 3
            assert row(page, hostile[DROP]).count() == 0 and row(page, hostile[SCRIPT]).count() == 0
            assert page.locator("#queue tr[data-alert]").count() == min(50, opened - 3)
            assert api(base, token, "GET", f"/api/alerts/{hostile[DROP]}")["verdict"] == "legit"
            stats = api(base, token, "GET", "/api/stats")
            assert sum(stats["counts"].values()) == opened and stats["counts"]["decided"] == 3

            # -- a lead decides three more through the API, so that the dashboard has a mix
            for verdict in ("fraud", "legit", "fraud"):
                got = api(base, token, "POST", "/api/alerts/next")
                api(base, token, "POST", f"/api/alerts/{got['id']}/verdict", {"verdict": verdict, "note": "api"})

            # -- the dashboard: the verdicts counted, today's row in the daily table, the plot drawn
            page.click("header a[href='/dashboard']")
            page.wait_for_url(base + "/dashboard")
            assert page.text_content("#verdicts-fraud") == "3"
            assert page.text_content("#verdicts-legit") == "2"
            assert page.text_content("#verdicts-unsure") == "1"
            assert count(page, "open") == opened - 6 and count(page, "decided") == 6
            # the daily table: today's row last; summed over its days (a run may cross midnight UTC) the
            # alerts and verdicts above, and each day's precision its own frauds over its decided
            today = datetime.now(timezone.utc).date().isoformat()
            rows = [r.locator("td").all_text_contents() for r in page.locator("#daily tr").all()]
            rows = [cells for cells in rows if cells]
            assert rows[-1][0] == today, rows
            assert [sum(int(cells[i]) for cells in rows) for i in (1, 2, 3, 4)] == [opened, 6, 3, 2], rows
            for cells in rows:
                fraud, legit = int(cells[3]), int(cells[4])
                assert cells[5] == (f"{fraud / (fraud + legit):.3f}" if fraud + legit else ""), rows
            assert page.evaluate("(() => { const i = document.getElementById('daily-plot');"
                                 " return i.complete && i.naturalWidth > 100; })()")
            screenshot(page, folders, "dashboard")
            assert page.evaluate("typeof window.__pwned") == "undefined"
        finally:
            browser.close()
    assert errors == []
    for f in folders:
        for name in ("login", "alert", "queue", "dashboard"):
            assert 0 < (f / f"review-{name}.png").stat().st_size < MAX_PNG_BYTES
