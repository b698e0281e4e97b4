"""The review loop at scale: 1M alerts in PostgreSQL, the queue page and claim-next under wrk;
and `serve --alerts` at a paced 200 requests/s beside plain `serve`, counting every alert.

Run (a PostgreSQL server: `.ci/postgres` starts one and prints its URL; wrk from Debian):
  .venv/bin/python benchmarks/bench_review.py --db "$(.ci/postgres | tail -1)" [--alerts 1000000]

Part 1 makes a new database on that server, fills it with `--alerts` open alerts through
`AlertStore.add_alerts` (the path `alerts load` and the writers take; the ingest rate is
printed), runs VACUUM ANALYZE, starts `aedetect review` and measures with wrk, one keep-alive
connection at a time: GET /queue (logged in, the first page by score) and POST /api/alerts/next
(each call claims one alert), then claim-next from 4 connections at once.

Part 2 trains a small model on generated transactions and starts `aedetect serve` twice, without
and with `--alerts` (a new database on the same server). wrk sends one request of 10
transactions with fresh ids every 1000 x connections / rate ms on each of 10 connections (about
200 requests/s less the answer time; wrk's delay() paces it; the achieved rate is printed) for
`--seconds`, counting the flagged transactions in the answers it reads; the server's own count
(/metrics) includes requests still in flight when wrk stops. After a clean shutdown (SIGTERM)
the store must hold exactly the server's count.

`--keep-db NAME` fills a database of that name once and reuses it on later runs (the fill takes
minutes; the claim-next runs take a few thousand of its alerts each time).

Every figure is printed with the load average beside it (2 shared cores: rerun above 1.5).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx
import numpy as np
from common import wrk
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "src")}


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


def new_database(admin_url: str) -> str:
    name = f"aedetect_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], port: int, path: str = "/healthz") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "aedetect.cli", *args, "--port", str(port)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read().decode())
    raise SystemExit(f"{args[0]} did not start")


def fill(url: str, n: int) -> float:
    from aedetect.review.store import AlertStore

    rng = np.random.default_rng(0)
    store = AlertStore(url)
    start_t = time.perf_counter()
    chunk = 5000
    for first in range(0, n, chunk):
        k = min(chunk, n - first)
        scores = rng.lognormal(1.0, 0.6, k) + 1.0
        amounts = np.round(rng.lognormal(3.5, 1.2, k), 2)
        store.add_alerts([{
            "transaction_id": f"tx{first + i:09d}", "transaction": {
                "transaction_id": f"tx{first + i:09d}", "card_id": f"c{(first + i) % 50000:06d}",
                "terminal_id": f"t{(first + i) % 4000:05d}", "amount": float(amounts[i]),
                "timestamp": "2026-12-01 12:00:00"},
            "score": float(scores[i]), "threshold": 1.0, "amount": float(amounts[i]),
            "model_id": f"model-{(first + i) % 3}", "model_version": "0123456789ab",
            "reasons": [{"feature": "card_id.amount_ratio_7d", "reason": "amount 8x the card's usual (7d)",
                         "contribution": 4.2}, {"feature": "hour", "reason": "hour=3", "contribution": 1.1}],
            "top_reason": ["card_id.amount_ratio_7d", "terminal_id.count_1h", "amount"][(first + i) % 3],
            "entity": f"card_id=c{(first + i) % 50000:06d}", "history": {"card_id.count_7d": 3.0}}
            for i in range(k)])
    seconds = time.perf_counter() - start_t
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as c:
        c.execute(text("VACUUM ANALYZE"))
    store.close()
    return n / seconds


def kept_database(admin_url: str, name: str) -> tuple[str, bool]:
    """The URL of database `name` on the server, created when missing; True when it was new."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        found = c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not found:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), not found


def part_queue(admin: str, n: int, seconds: int, keep: str | None) -> None:
    from aedetect.review.store import AlertStore

    url, empty = kept_database(admin, keep) if keep else (new_database(admin), True)
    try:
        if empty:
            print(f"filling {n:,} alerts ...", flush=True)
            rate = fill(url, n)
            print(f"ingest: {rate:,.0f} alerts/s through AlertStore.add_alerts ({load()})")
        store = AlertStore(url)
        print(f"the store holds {store.counts()}")
        token = store.add_user(f"bench-{uuid.uuid4().hex[:6]}", "analyst", "password1")
        name = store.user_by_token(token).name
        store.close()
        port = free_port()
        proc = start(["review", "--db", url], port)
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base) as http:
                page = http.get("/login")
                csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
                http.post("/login", data={"name": name, "password": "password1", "csrf": csrf})
                cookie = http.cookies["aedetect_session"]
                assert "id=\"queue\"" in http.get("/queue").text
            rows = []
            for name, path, conns, script, hdr in [
                ("GET /queue (by score)", "/queue", 1, None, {"Cookie": f"aedetect_session={cookie}"}),
                ("GET /queue?order=value", "/queue?order=value", 1, None, {"Cookie": f"aedetect_session={cookie}"}),
                ("GET /api/alerts?limit=50", "/api/alerts?limit=50", 1, None, {"Authorization": f"Bearer {token}"}),
                ("POST /api/alerts/next", "/api/alerts/next", 1, 'wrk.method = "POST"',
                 {"Authorization": f"Bearer {token}"}),
                ("POST /api/alerts/next, 4 at once", "/api/alerts/next", 4, 'wrk.method = "POST"',
                 {"Authorization": f"Bearer {token}"})]:
                r = wrk(base + path, seconds, conns, script, hdr)
                rows.append((name, conns, r))
                print(f"{name:36s} c={conns}  p50 {r['p50']:7.1f} ms  p90 {r['p90']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
                      f"{r['rps']:7.1f} req/s  non-2xx {r['bad']}  ({load()})", flush=True)
            claimed = AlertStore(url, migrate=False).counts()["claimed"]
            print(f"claimed so far: {claimed:,} alerts")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    finally:
        if not keep:
            drop_database(admin, url)


SERVE_LUA = """
local n = 0
local rows = {}
function setup(thread) table.insert(threads, thread) end
threads = {}
function init(args) flagged = 0; tid = math.random(1, 1000000000) end
function delay() return %(delay)d end
function request()
  n = n + 1
  local parts = {}
  for k = 1, #rows_template do
    parts[k] = string.format(rows_template[k], string.format("r%%d-%%d-%%d", tid, n, k))
  end
  return wrk.format("POST", "/v1/score", {["Content-Type"] = "application/json"},
                    '{"transactions": [' .. table.concat(parts, ",") .. ']}')
end
function response(status, headers, body)
  for _ in string.gmatch(body, '"flag":true') do flagged = flagged + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("flagged") end
  io.write(string.format("FLAGGED %%d\\n", total))
end
rows_template = %(rows)s
"""


def part_serve(admin: str, seconds: int, rate: float, repeats: int) -> None:
    import json

    from aedetect.data.creditcard import CREDITCARD
    from aedetect.data.generate import generate_transactions
    from aedetect.model.detector import AutoencoderDetector

    df = generate_transactions(6000, 0.02, seed=0)
    feats = list(CREDITCARD.features)
    det = AutoencoderDetector(epochs=5, log_columns=["Amount"], seed=0).fit(df[df["Class"] == 0][feats])
    folder = Path(tempfile.mkdtemp()) / "model"
    det.save(folder)
    flagged_rows = df[(df["Class"] == 1)].head(3)
    normal_rows = df[df["Class"] == 0].head(7)
    rows = []
    for _, r in list(flagged_rows.iterrows()) + list(normal_rows.iterrows()):
        body = {"id": "__ID__", **{c: float(r[c]) for c in feats}}
        rows.append(json.dumps(body, separators=(",", ":")).replace('"__ID__"', '"%s"'))
    lua_rows = "{" + ",".join("[==[" + r + "]==]" for r in rows) + "}"
    connections = 10  # each waits 1000 x 10 / rate ms before its next request: about `rate` in all
    script = SERVE_LUA % {"delay": int(1000 * connections / rate), "rows": lua_rows}
    results: dict[str, list] = {"plain": [], "alerts": []}
    for _ in range(repeats):  # alternated, so that a slow spell of the machine hits both
        for mode in ("plain", "alerts"):
            results[mode].append(serve_once(folder, script, admin, mode, seconds, connections))
    for q in ("p50", "p99"):
        diff = np.array([a[q] - p[q] for a, p in zip(results["alerts"], results["plain"], strict=True)])
        print(f"{q} added by --alerts over {repeats} alternated pairs: {diff.mean():+.2f} ms "
              f"(pairs: {', '.join(f'{d:+.2f}' for d in diff)}); plain {q} itself ranged "
              f"{min(r[q] for r in results['plain']):.2f}-{max(r[q] for r in results['plain']):.2f} ms")


def serve_once(folder: Path, script: str, admin: str, mode: str, seconds: int, connections: int) -> dict:
    from aedetect.review.store import AlertStore

    url = new_database(admin) if mode == "alerts" else None
    port = free_port()
    args = ["serve", "--model", str(folder)] + (["--alerts", url] if url else [])
    proc = start(args, port)
    try:
        r = wrk(f"http://127.0.0.1:{port}/v1/score", seconds, connections, script)
        answered = int(re.search(r"FLAGGED (\d+)", r["out"]).group(1))  # seen by wrk in its answers
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text  # all the server flagged
        flagged = int(float(re.search(r"^aedetect_transactions_flagged_total (\S+)", metrics, re.M).group(1)))
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean shutdown: the writer drains its queue
        err = proc.communicate(timeout=120)[1].decode()
    stored = None
    if url:
        store = AlertStore(url, migrate=False)
        stored = store.list_alerts(status="open", limit=1)[1]
        store.close()
        drop_database(admin, url)
    print(f"serve {mode:6s}: {r['rps']:6.1f} req/s (10 tx each)  p50 {r['p50']:6.2f} ms  p90 {r['p90']:6.2f} ms  "
          f"p99 {r['p99']:6.2f} ms  non-2xx {r['bad']}  flagged {flagged:,} ({answered:,} in answers "
          "wrk read before it stopped)"
          + (f"  alerts stored {stored:,}" + ("  (none lost)" if stored == flagged else "  LOST OR EXTRA")
             if stored is not None else "") + f"  ({load()})", flush=True)
    if "warning" in err:
        print(err.strip())
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=os.environ.get("AEDETECT_TEST_POSTGRES_URL"),
                    help="a PostgreSQL URL whose user may create databases (.ci/postgres prints one)")
    ap.add_argument("--alerts", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--repeats", type=int, default=3, help="alternated plain / --alerts pairs")
    ap.add_argument("--part", choices=["queue", "serve", "both"], default="both")
    ap.add_argument("--keep-db", help="fill a database of this name once and reuse it")
    args = ap.parse_args()
    if not args.db:
        raise SystemExit("pass --db postgresql+psycopg://... (e.g. $(.ci/postgres | tail -1))")
    print(f"{os.cpu_count()} cores; {load()}")
    if args.part in ("queue", "both"):
        part_queue(args.db, args.alerts, args.seconds, args.keep_db)
    if args.part in ("serve", "both"):
        part_serve(args.db, args.seconds, args.rate, args.repeats)


if __name__ == "__main__":
    main()
