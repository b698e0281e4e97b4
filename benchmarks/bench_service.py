"""Load and latency of the REST service on loopback, next to the in-process scoring baseline.

Run: .venv/bin/python benchmarks/bench_service.py --model runs/demo/model

Starts `aedetect serve` on 127.0.0.1 in a subprocess, then sends sequential requests (one
client, keep-alive) of 1 and of 100 transactions, each phase bounded by --requests and
--seconds. Prints p50/p99 latency and throughput, and the same scoring called in-process
(`score_samples` + `feature_errors`, no HTTP) as the baseline.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import numpy as np
from common import report, table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(client, url: str, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if client.get(url).status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.2)
    raise SystemExit("the server did not start in time")


def run_phase(call, max_requests: int, max_seconds: float) -> np.ndarray:
    for _ in range(min(20, max_requests)):  # warm-up
        call()
    lat, end = [], time.monotonic() + max_seconds
    while len(lat) < max_requests and time.monotonic() < end:
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)
    return np.array(lat)


def line(name: str, batch: int, lat: np.ndarray) -> str:
    p50, p99 = np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3
    return (f"{name:<12} {batch:>5} {len(lat):>8} {p50:>9.2f} {p99:>9.2f} "
            f"{len(lat) / lat.sum():>9.0f} {batch * len(lat) / lat.sum():>10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/model", help="model folder (make demo writes one)")
    ap.add_argument("--requests", type=int, default=2000, help="most requests per phase")
    ap.add_argument("--seconds", type=float, default=20.0, help="most seconds per phase")
    args = ap.parse_args()

    import httpx

    from aedetect.data.generate import generate_transactions
    from aedetect.model.detector import load_detector

    det = load_detector(args.model)
    rows = generate_transactions(1000, 0.01, seed=21)[det.feature_names_in_]
    payloads = {n: {"transactions": rows.iloc[:n].to_dict("records")} for n in (1, 100)}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AEDETECT_API_KEY"}
    proc = subprocess.Popen([sys.executable, "-m", "aedetect.cli", "serve", "--model", args.model,
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_ready(client, "/healthz", proc)
            print(f"{'path':<12} {'batch':>5} {'requests':>8} {'p50 ms':>9} {'p99 ms':>9} "
                  f"{'req/s':>9} {'rows/s':>10}")
            lines = []
            for n in (1, 100):
                x = rows.iloc[:n].to_numpy()

                def direct(x=x):
                    det.score_with_contributions(x)  # what the service computes per request

                def http(n=n):
                    r = client.post("/v1/score", json=payloads[n])
                    r.raise_for_status()

                for name, fn in (("in-process", direct), ("HTTP", http)):
                    lines.append(line(name, n, run_phase(fn, args.requests, args.seconds)))
                    print(lines[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows_md = [ln.split() for ln in lines]
    body = (f"Model {args.model}; one sequential client on 127.0.0.1; at most {args.requests} requests "
            f"or {args.seconds:g} s per phase. In-process: `score_with_contributions` alone.\n\n"
            + table(["path", "batch", "requests", "p50 ms", "p99 ms", "req/s", "rows/s"], rows_md))
    report("service", "Online scoring: REST service latency and throughput", body)


if __name__ == "__main__":
    main()
