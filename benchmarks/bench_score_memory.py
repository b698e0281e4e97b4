"""Batch scoring: throughput and peak memory of streaming `score_file` vs reading the whole file.

Run: .venv/bin/python benchmarks/bench_score_memory.py --model runs/demo/model --rows 200000 1000000

Each measurement runs in a fresh subprocess; peak RSS growth is measured above the process's RSS
after the model is loaded and warmed up (psutil, sampled every 5 ms).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import report, table

CHILD = r"""
import json, sys, threading, time, psutil
from aedetect.model.detector import load_detector
mode, model, data, out, chunk = sys.argv[1:6]
det = load_detector(model)
det.anomaly_score([[0.0] * det.n_features_in_])
proc = psutil.Process()
base = peak = proc.memory_info().rss
done = False
def sample():
    global peak
    while not done:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
start = time.perf_counter()
if mode == "stream":
    from aedetect.serving.batch import score_file
    rows = score_file(det, data, out, chunk_rows=int(chunk)).rows_read
else:
    from aedetect.data.io import read_raw, write_table
    df = read_raw(data)
    df["score"] = det.anomaly_score(df[det.feature_names_in_])
    write_table(df, out); rows = len(df)
seconds = time.perf_counter() - start
done = True; t.join()
print(json.dumps({"rows": rows, "seconds": seconds, "peak_growth_mb": (peak - base) / 2**20}))
"""


def measure(mode: str, model: str, data: Path, chunk: int) -> dict:
    out = data.with_name(f"out-{mode}.csv")
    res = subprocess.run([sys.executable, "-c", CHILD, mode, model, str(data), str(out), str(chunk)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo/model", help="model folder (make demo writes one)")
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000])
    ap.add_argument("--chunk-rows", type=int, default=20_000)
    ap.add_argument("--skip-in-memory", action="store_true", help="only the streaming path")
    args = ap.parse_args()

    from aedetect.data.generate import generate_transactions
    from aedetect.data.io import write_table

    print(f"{'rows':>10} {'file MB':>8} {'mode':>10} {'rows/s':>10} {'peak RSS growth MB':>19}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            data = write_table(generate_transactions(n, 0.01, seed=5), Path(tmp) / f"data-{n}.csv")
            size = data.stat().st_size / 2**20
            modes = ["stream"] + ([] if args.skip_in_memory else ["in-memory"])
            for mode in modes:
                r = measure(mode.replace("in-memory", "memory"), args.model, data, args.chunk_rows)
                print(f"{n:>10,} {size:>8.0f} {mode:>10} {r['rows'] / r['seconds']:>10,.0f} "
                      f"{r['peak_growth_mb']:>19.0f}", flush=True)
                results.append([n, round(size), mode, round(r["rows"] / r["seconds"]),
                                round(r["peak_growth_mb"])])
            data.unlink()
    body = (f"Model {args.model}; generated CSV; streaming with {args.chunk_rows:,}-row chunks vs "
            "reading the whole file; peak RSS growth above the process with the model loaded.\n\n"
            + table(["rows", "file MB", "mode", "rows/s", "peak RSS growth MB"], results))
    report("score_memory", "Batch scoring memory: streaming vs whole file", body)


if __name__ == "__main__":
    main()
