"""The TensorFlow-free runtime beside the Keras path, each pair measured side by side in one run.

1. Whole process, the ULB CSV: `aedetect score` (NumPy runtime), the same scoring through the
   Keras detector (the path `aedetect score` took before), and pyarrow reading the file and
   nothing else. Wall time and peak RSS (the child's ru_maxrss), median of `--pairs` rounds,
   each round running the three back to back.
2. The REST service: cold start (process start to the first 200 on /healthz), RSS after
   `--requests` one-transaction requests, and their p50/p99 latency; `aedetect serve` against the
   same app over the Keras detector.
3. In memory: rows/s of `Scorer.anomaly_score` against `AutoencoderDetector.anomaly_score` (and
   ONNX Runtime on the exported graph, when installed) on the ULB rows, best of `--repeats`.

    python benchmarks/bench_runtime.py --model runs/demo/model [--data creditcard.csv]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import best_of, report, table

BIN = Path(sys.executable).parent
DEFAULT_DATA = Path(os.environ.get("AEDETECT_CACHE", Path.home() / ".cache" / "aedetect")) / "creditcard.csv"

KERAS_SCORE = """
import sys
from aedetect._imports import import_tensorflow_quietly
import_tensorflow_quietly()
from aedetect.model.detector import load_detector
from aedetect.serving.batch import score_file
score_file(load_detector(sys.argv[1]), sys.argv[2], sys.argv[3])
"""
PYARROW_READ = "import sys, pyarrow.csv as c; c.read_csv(sys.argv[1])"
# The service over the Keras detector: the same app, with the loader create_app calls swapped.
KERAS_SERVE = """
import sys, uvicorn
from aedetect._imports import import_tensorflow_quietly
import_tensorflow_quietly()
import aedetect.serving.runtime
from aedetect.model.detector import load_detector
aedetect.serving.runtime.load_scorer = load_detector
from aedetect.serving.app import create_app
uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{cmd[:3]} failed: {err.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def whole_process(model: Path, data: Path, pairs: int) -> str:
    out = Path(tempfile.mkdtemp(prefix="aedetect-bench-"))
    cmds = {
        "pyarrow read_csv (floor)": [sys.executable, "-c", PYARROW_READ, str(data)],
        "aedetect score, Keras path (before)": [sys.executable, "-c", KERAS_SCORE, str(model), str(data),
                                                str(out / "keras.csv")],
        "aedetect score, NumPy runtime (after)": [str(BIN / "aedetect"), "score", "--model", str(model),
                                                  "--data", str(data), "--out", str(out / "runtime.csv"),
                                                  "--overwrite"],  # each pair writes it again
    }
    runs = {name: [] for name in cmds}
    for _ in range(pairs):
        for name, cmd in cmds.items():
            runs[name].append(run_measured(cmd))
    floor = statistics.median(w for w, _ in runs["pyarrow read_csv (floor)"])
    rows = []
    for name, r in runs.items():
        wall = statistics.median(w for w, _ in r)
        rows.append([name, wall, wall / floor, statistics.median(m for _, m in r),
                     ", ".join(f"{w:.2f}" for w, _ in r)])
    for f in out.iterdir():
        f.unlink()
    out.rmdir()
    return (f"### Whole process, {data.name} ({data.stat().st_size / 1e6:.0f} MB), median of {pairs} rounds\n\n"
            + table(["process", "wall s", "x pyarrow read", "peak RSS MB", "each round s"], rows))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service(model: Path, requests: int) -> str:
    import httpx
    import psutil

    from aedetect.serving.runtime import load_scorer

    tx = dict.fromkeys(load_scorer(model).feature_names_in_, 0.5)
    rows = []
    for name, make in [
        ("Keras detector (before)", lambda p: [sys.executable, "-c", KERAS_SERVE, str(model), str(p)]),
        ("NumPy runtime (after)", lambda p: [str(BIN / "aedetect"), "serve", "--model", str(model),
                                             "--port", str(p)]),
    ]:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        start = time.perf_counter()
        proc = subprocess.Popen(make(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with httpx.Client(timeout=30) as client:
                while True:
                    if proc.poll() is not None:
                        raise SystemExit(f"{name}: the server exited with status {proc.returncode}")
                    try:
                        if client.get(f"{url}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.01)
                cold = time.perf_counter() - start
                for _ in range(20):  # warm-up (the Keras path traces its function on the first call)
                    client.post(f"{url}/v1/score", json={"transactions": [tx]})
                lat = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    r = client.post(f"{url}/v1/score", json={"transactions": [tx]})
                    lat.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
            rss = psutil.Process(proc.pid).memory_info().rss / 1e6
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        lat_ms = np.array(lat) * 1e3
        rows.append([name, cold, rss, float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 99))])
    return (f"### REST service, one transaction per request ({requests} sequential requests after 20 warm-up)\n\n"
            + table(["server", "cold start s (to first 200 on /healthz)", "RSS MB", "p50 ms", "p99 ms"], rows))


def in_memory(model: Path, data: Path, repeats: int) -> str:
    import pyarrow.csv as pacsv

    from aedetect._imports import import_tensorflow_quietly
    from aedetect.serving.runtime import load_scorer

    scorer = load_scorer(model)
    x = pacsv.read_csv(data).select(scorer.feature_names_in_).to_pandas().to_numpy("float64")
    import_tensorflow_quietly()
    from aedetect.model.detector import load_detector

    det = load_detector(model)
    paths = {"Keras detector (before)": lambda: det.anomaly_score(x),
             "NumPy runtime (after)": lambda: scorer.anomaly_score(x)}
    try:
        import onnxruntime as ort

        from aedetect.serving.export import onnx_model

        sess = ort.InferenceSession(onnx_model(scorer).SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {c: np.ascontiguousarray(x[:, j]) for j, c in enumerate(scorer.feature_names_in_)}
        paths["ONNX Runtime, exported graph"] = lambda: sess.run(["score"], feed)
    except ImportError:
        pass
    for fn in paths.values():
        fn()  # warm-up
    seconds = {name: [] for name in paths}
    for _ in range(repeats):  # interleaved, so a busy moment hits each path alike
        for name, fn in paths.items():
            seconds[name].append(best_of(fn, 1))
    base = len(x) / min(seconds["Keras detector (before)"])
    rows = [[name, len(x) / min(s), len(x) / min(s) / base] for name, s in seconds.items()]
    return (f"### In memory, {len(x):,} rows x {x.shape[1]} columns, best of {repeats}\n\n"
            + table(["path", "rows/s", "x Keras"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/model"), help="model folder (make demo writes one)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the ULB CSV")
    ap.add_argument("--pairs", type=int, default=5, help="rounds of the whole-process comparison")
    ap.add_argument("--requests", type=int, default=500, help="requests per server")
    ap.add_argument("--repeats", type=int, default=3, help="in-memory repeats")
    ap.add_argument("--only", default="process,service,memory")
    args = ap.parse_args()
    if not (args.model / "manifest.json").is_file():
        raise SystemExit(f"{args.model}: no model folder; run `make demo` or pass --model")
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found: run `aedetect data fetch creditcard`")
    parts = []
    if "process" in args.only:
        parts.append(whole_process(args.model, args.data, args.pairs))
    if "service" in args.only:
        parts.append(service(args.model, args.requests))
    if "memory" in args.only:
        parts.append(in_memory(args.model, args.data, args.repeats))
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    report("runtime", "Scoring runtime (NumPy) beside the Keras path",
           "\n\n".join(parts) + f"\n\nCPU cores available: {cores}; load average at the end {load:.1f} "
           "(a shared machine: other jobs ran meanwhile).")


if __name__ == "__main__":
    main()
