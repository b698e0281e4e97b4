"""Shared helpers of the benchmark scripts: the machine, the real data split, timing, tables.

Benchmarks are scripts, not tests: each prints a Markdown table and writes it to
`runs/bench/<name>.md`. Every ratio is measured side by side in the same run.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REAL_DATA = Path(os.environ.get("AEDETECT_CACHE", "/tmp/aedata")) / "creditcard.csv"
OUT_DIR = Path(os.environ.get("AEDETECT_BENCH_OUT", "runs/bench"))


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
