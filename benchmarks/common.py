"""Shared helpers of the benchmark scripts: the machine, the real data split, timing, tables.

Benchmarks are scripts, not tests: each prints a Markdown table and writes it to
`runs/bench/<name>.md`. Every ratio is measured side by side in the same run.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REAL_DATA = Path(os.environ.get("AEDETECT_CACHE", "/tmp/aedata")) / "creditcard.csv"
OUT_DIR = Path(os.environ.get("AEDETECT_BENCH_OUT", "runs/bench"))


def run_process(cmd: list[str], pythonpath: str | None = None) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds (user + system), peak RSS in MB and system seconds of one whole
    process (`pythonpath`: a src/ folder to run instead of the installed one); exits on failure.
    System time is mostly page faults here: on a VM that makes fresh memory dear, it moves a
    run's wall time by a second or more."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, usage.ru_stime


def wrk(url: str, seconds: int, connections: int, script: str | None = None, headers: dict | None = None,
        threads: int = 1) -> dict:
    """One run of wrk (the native load generator, keep-alive connections): latency percentiles
    (ms), requests/s, non-2xx answers (`bad`), socket errors (connect, read, write, timeout) and
    its whole output (`out`, for what a Lua `script` prints)."""
    import re
    import tempfile

    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script or "")
    cmd += ["-s", f.name, url]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    codes = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"p50": ms("50"), "p90": ms("90"), "p99": ms("99"),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "bad": int(codes.group(1)) if codes else 0,
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0, "out": out}


def machine() -> str:
    """CPU model and core count (from /proc/cpuinfo), TensorFlow's devices, library versions."""
    import numpy as np
    import pyarrow
    import tensorflow as tf

    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return (f"{model}, {os.cpu_count()} cores, GPUs seen by TensorFlow: {len(gpus)}; "
            f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
            f"NumPy {np.__version__}, pyarrow {pyarrow.__version__}")


def real_data():
    """The ULB frame (validated) and its guide split, or exit with a message when absent."""
    from aedetect.data.creditcard import CREDITCARD
    from aedetect.data.io import read_table
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import split_frame

    if not REAL_DATA.is_file():
        raise SystemExit(f"{REAL_DATA} not found: run `aedetect data fetch creditcard` with "
                         "AEDETECT_CACHE set to its folder")
    df = read_table(REAL_DATA)
    return df, split_frame(df, TrainConfig(), CREDITCARD)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def best_of(fn, repeats: int = 3) -> float:
    """Shortest wall time of `repeats` calls: the least disturbed by other work on the machine."""
    times = []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        times.append(t.seconds)
    return min(times)


def median(values) -> float:
    return float(statistics.median(values)) if values else float("nan")


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(name: str, title: str, body: str) -> Path:
    """Print `body` under a heading and the machine line, and write it to runs/bench/<name>.md."""
    text = f"## {title}\n\nMachine: {machine()}\n\n{body}\n"
    print(text, flush=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.md"
    tmp = path.with_suffix(".md.part")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
