"""The REST service under wrk (a native load generator), keep-alive connections as real clients
keep them: latency of one client, throughput of 16, a 1,000-transaction request, and overload.

    python benchmarks/bench_service_wrk.py [--model DIR] [--data CSV] [--seconds 10] [--workers N]

Starts `aedetect serve` (its defaults) on a free port and runs, one after the other:

1. one keep-alive client posting one transaction at a time (`wrk -t1 -c1`);
2. 16 keep-alive connections posting one transaction each (`wrk -t2 -c16`): the sustainable rate;
3. one client posting 1,000 transactions a request;
4. overload: 64 connections paced (wrk's `delay()`) to offer twice the rate of phase 2. Every
   answer is counted by status; a 503 without `Retry-After` and any socket error (connect,
   read, write, timeout: a reset or a dropped connection) are counted apart. The latency of the
   accepted requests comes from the server's own histogram (`/metrics`, by status), read before
   and after: wrk's percentiles mix the 503s in.

The transactions are the first rows of `--data` with the model's input columns. wrk shares the
machine's cores with the server; it is a C program and uses a small part of one. The load
average is printed beside every phase (a figure taken above 1.5 is no measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_service import free_port
from common import report, table, wrk

COUNTS = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; refused = 0; other = 0; no_retry = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then
    refused = refused + 1
    if headers["Retry-After"] == nil and headers["retry-after"] == nil then no_retry = no_retry + 1 end
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = {ok = 0, refused = 0, other = 0, no_retry = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  io.write(string.format("COUNTS ok=%d refused=%d other=%d no_retry=%d\\n", t.ok, t.refused, t.other, t.no_retry))
end
"""


def post(url: str, body: str, seconds: int, connections: int, threads: int = 1, delay_ms: int = 0) -> dict:
    """`common.wrk` posting `body`, with the answers counted by status."""
    script = (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
              f"wrk.body = {json.dumps(body)}\n" + COUNTS
              + (f"function delay() return {delay_ms} end\n" if delay_ms else ""))
    r = wrk(url, seconds, connections, script, threads=threads)
    counts = re.search(r"COUNTS (.*)", r["out"]).group(1)
    return {**r, **{k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}}


def accepted_latency(base: str) -> dict[str, float]:
    """The server's latency histogram of answered /v1/score requests by status: bucket -> count."""
    import httpx

    text = httpx.get(f"{base}/metrics").text
    buckets: dict[str, float] = {}
    for le, status, value in re.findall(
            r'aedetect_request_latency_seconds_bucket\{le="([^"]+)",route="/v1/score",status="(\d+)"\} ([\d.e+]+)',
            text):
        buckets[f"{status} {le}"] = float(value)
    return buckets


def share_within(before: dict, after: dict, status: str, bound: str) -> tuple[int, float]:
    """Requests answered with `status` between the two scrapes, and the share within `bound` s."""
    total = after.get(f"{status} +Inf", 0) - before.get(f"{status} +Inf", 0)
    within = after.get(f"{status} {bound}", 0) - before.get(f"{status} {bound}", 0)
    return int(total), (within / total if total else float("nan"))


def transactions(model: Path, data: Path, n: int) -> list[dict]:
    import pyarrow.csv as pacsv

    from aedetect.serving.runtime import load_scorer

    columns = list(load_scorer(model).feature_names_in_)
    rows = pacsv.read_csv(data).slice(0, n).select(columns).to_pylist()
    return [{"id": f"tx-{i}", **r} for i, r in enumerate(rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("runs/demo/model"), help="default: make demo's model")
    ap.add_argument("--data", type=Path, default=None,
                    help="CSV whose first rows are sent (default: the real ULB file, fetched)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=None, help="serve's --workers (default: its own default)")
    args = ap.parse_args()
    import httpx

    if args.data is None:
        from aedetect.data.fetch import fetch_creditcard

        args.data = fetch_creditcard()
    txs = transactions(args.model, args.data, 1000)
    one, batch = json.dumps({"transactions": txs[:1]}), json.dumps({"transactions": txs})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile("w+")  # the server's stderr: a pipe nobody reads would fill and stall it
    started = time.perf_counter()
    server = subprocess.Popen([str(Path(sys.executable).with_name("aedetect")), "serve", "--model",
                               str(args.model), "--port", str(port)]
                              + (["--workers", str(args.workers)] if args.workers else []),
                              stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        for _ in range(2000):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.01)
        else:
            log.seek(0)
            raise SystemExit(log.read())
        cold = time.perf_counter() - started
        url, s = f"{base}/v1/score", args.seconds
        post(url, one, 3, 4)  # warm-up
        rows = []

        def settled() -> float:
            """The load average once the previous phase's own load has died down (below 1.0, at
            most 90 s): what else the machine is doing. During a phase the server and wrk keep
            the cores busy by design."""
            for _ in range(90):
                if os.getloadavg()[0] < 1.0:
                    break
                time.sleep(1)
            return os.getloadavg()[0]

        def phase(name: str, load: float, r: dict, extra: str = "") -> dict:
            rows.append([name, r["rps"], r["p50"], r["p90"], r["p99"], r["ok"], r["refused"],
                         r["other"] + r["socket_errors"], extra, load])
            print(rows[-1], flush=True)
            return r

        phase("1 connection, 1 transaction", settled(), post(url, one, s, 1))
        steady = phase("16 connections, 1 transaction", settled(), post(url, one, s, 16, threads=2))
        phase("1 connection, 1,000 transactions", settled(), post(url, batch, s, 1))
        target = 2 * steady["rps"]
        connections = 64
        delay = max(1, round(connections * 1000 / target))  # each connection waits this between requests
        load = settled()
        before = accepted_latency(base)
        over = post(url, one, s, connections, threads=2, delay_ms=delay)
        after = accepted_latency(base)
        n_ok, within_100 = share_within(before, after, "200", "0.1")
        _, within_25 = share_within(before, after, "200", "0.025")
        phase(f"overload: 64 connections paced to {target:,.0f}/s", load, over,
              f"accepted (server side): {n_ok:,}, {within_100:.2%} within 100 ms, {within_25:.2%} within "
              f"25 ms; 503s without Retry-After: {over['no_retry']}")
        import psutil

        procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        rss = [p.memory_info().rss / 2**20 for p in procs]
    finally:
        server.terminate()
        server.wait(10)
    log.seek(0)
    said = (log.read().strip().splitlines() or ["(no start line)"])[0]  # "serving ... (...; N workers)"
    body = table(["phase", "requests/s", "p50 ms", "p90 ms", "p99 ms", "200", "503", "errors", "note",
                  "load avg before"], rows)
    body = (f"`{said}`; cold start (process start to the first 200 on /healthz) {cold:.2f} s; RSS after "
            f"the run: {', '.join(f'{r:.0f}' for r in rss)} MB (the command, then its workers; {sum(rss):.0f} MB "
            "in all)\n\n" + body)
    body += ("\n\nerrors: other statuses and wrk's socket errors (connect, read, write, timeout). The "
             "overload row's percentiles are wrk's, over every answer (503s included).")
    if any(r[-1] > 1.5 for r in rows):
        body += "\n\n**A load average above 1.5: something else ran; these figures are no measurement.**"
    print(body)
    report("service_wrk", "The service under wrk, keep-alive connections", body)


if __name__ == "__main__":
    main()
