"""The REST service under load: 32 concurrent clients, open loop at 200 requests/s and at twice
the sustainable rate, with the server's memory before and after.

Run: .venv/bin/python benchmarks/bench_service_load.py --model runs/demo/model

Starts `aedetect serve` on 127.0.0.1 (default back-pressure settings) and sends one-transaction
requests. Closed loop: 32 clients, each sending its next request when the last is answered; its
rate of 200s is taken as the sustainable rate. Open loop: requests leave on a fixed schedule
whatever the answers, and latency counts from the scheduled time (so queueing in the client
shows too). Every phase reports throughput, p50/p99/max latency, 503s (refused at capacity,
with Retry-After) and other errors. The load generator runs on the same machine as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import numpy as np
from bench_service import free_port
from common import report, table


async def _closed(client, body, clients: int, seconds: float):
    lat, codes, end = [], [], time.monotonic() + seconds

    async def worker():
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                codes.append((await client.post("/v1/score", json=body)).status_code)
            except Exception:  # noqa: BLE001 - counted as an error
                codes.append(0)
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return np.array(lat), np.array(codes), time.perf_counter() - start


async def _open(client, body, rate: float, seconds: float):
    n = int(rate * seconds)
    lat, codes = np.full(n, np.nan), np.zeros(n, int)
    start = time.perf_counter()

    async def one(i: int):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        try:
            codes[i] = (await client.post("/v1/score", json=body)).status_code
        except Exception:  # noqa: BLE001 - counted as an error
            codes[i] = 0
        lat[i] = time.perf_counter() - due

    await asyncio.gather(*(one(i) for i in range(n)))
    return lat, codes, time.perf_counter() - start


def _row(name: str, lat, codes, wall: float) -> list[str]:
    ok = codes == 200
    ok_lat = lat[ok] if ok.any() else np.array([np.nan])
    return [name, f"{len(codes)}", f"{ok.sum() / wall:.0f}", f"{np.percentile(ok_lat, 50) * 1e3:.1f}",
            f"{np.percentile(ok_lat, 99) * 1e3:.1f}", f"{np.nanmax(lat) * 1e3:.0f}",
            f"{(codes == 503).sum()}", f"{((codes != 200) & (codes != 503)).sum()}"]


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/model", help="model folder (make demo writes one)")
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds per phase")
    ap.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()

    import httpx

    from aedetect.data.creditcard import CREDITCARD
    from aedetect.data.generate import generate_transactions

    tx = generate_transactions(10, 0.0, seed=21)[list(CREDITCARD.features)].iloc[0]
    body = {"transactions": [{k: float(v) for k, v in tx.items()}]}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AEDETECT_API_KEY"}
    proc = subprocess.Popen([sys.executable, "-m", "aedetect.cli", "serve", "--model", args.model,
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rows = []
    try:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            from bench_service import wait_ready

            wait_ready(c, "/healthz", proc)
            for _ in range(50):  # warm-up
                c.post("/v1/score", json=body)
        rss_before = _rss_mb(proc.pid)

        async def phases():
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                         limits=limits) as client:
                lat, codes, wall = await _closed(client, body, args.clients, args.seconds)
                rows.append(_row(f"closed loop, {args.clients} clients", lat, codes, wall))
                print(rows[-1], flush=True)
                sustainable = max((codes == 200).sum() / wall, 1.0)
                for rate in (args.rate, 2 * sustainable):
                    lat, codes, wall = await _open(client, body, rate, args.seconds)
                    rows.append(_row(f"open loop {rate:.0f}/s", lat, codes, wall))
                    print(rows[-1], flush=True)
                return sustainable

        sustainable = asyncio.run(phases())
        rss_after = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    load = os.getloadavg()[0]
    body_md = (f"Model {args.model}; `aedetect serve` defaults (2 requests computed at once, 16 "
               f"waiting, 0.25 s longest wait); one transaction per request; {args.seconds:g} s a "
               f"phase; load generator on the same machine ({os.cpu_count()} cores, load average "
               f"{load:.1f} at the end: a shared machine). Sustainable rate = the closed loop's "
               f"200s per second ({sustainable:.0f}/s). Latency of answered (200) requests; max "
               "covers every request, answered or refused. Server RSS "
               f"{rss_before:.0f} MB before, {rss_after:.0f} MB after.\n\n"
               + table(["phase", "requests", "200/s", "p50 ms", "p99 ms", "max ms", "503s",
                        "other errors"], rows))
    print(f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after")
    report("service_load", "REST service under load: concurrency, open loop, overload", body_md)


if __name__ == "__main__":
    main()
