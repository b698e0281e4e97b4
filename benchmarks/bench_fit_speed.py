"""Seconds of `AutoencoderDetector().fit(X)` (the defaults) on small generated sets, each size in a
fresh process: the first fit (tracing included) and a second fit in the same process; optionally
beside another revision's code, run the same way and interleaved in the same run.

    python benchmarks/bench_fit_speed.py                      # 300, 1,000, 10,000 rows x 25 columns
    mkdir /tmp/base && git archive main src | tar -x -C /tmp/base    # the baseline's code
    python benchmarks/bench_fit_speed.py --baseline-src /tmp/base/src
    python benchmarks/bench_fit_speed.py --rows 50000,200000 --features 31 --xla-both  # XLA pays?

Rows lie near a 10-dimensional plane in `--features` columns. One thread for TensorFlow and
BLAS (as in bench_suite.py), so the figures compare like with like on a shared machine; the
library import (TensorFlow's, mostly) is timed apart from the fits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
w, c = time.perf_counter(), time.process_time()
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from aedetect import AutoencoderDetector  # the path every revision has
out = {"import_s": time.perf_counter() - w}
n, d, params = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.normal(size=(n, 10)) @ rng.normal(size=(10, d))
for k in ("first", "second"):
    w, c = time.perf_counter(), time.process_time()
    det = AutoencoderDetector(**params).fit(x)
    out[k] = [time.perf_counter() - w, time.process_time() - c]
out["epochs"] = det.n_epochs_
print("RESULT " + json.dumps(out))
"""


def run_child(src: str | None, n: int, d: int, params: dict) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(d), json.dumps(params)], env=env,
                          capture_output=True, text=True, check=True)
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="300,1000,10000")
    ap.add_argument("--features", type=int, default=25)
    ap.add_argument("--baseline-src", help="the src/ folder of the revision to compare against")
    ap.add_argument("--xla-both", action="store_true",
                    help="this code with jit_compile=False and True, instead of the default")
    args = ap.parse_args()
    versions = {"this": (None, {})}
    if args.xla_both:
        versions = {"this, no XLA": (None, {"jit_compile": False}),
                    "this, XLA": (None, {"jit_compile": True})}
    if args.baseline_src:
        versions["baseline"] = (args.baseline_src, {})
    print("| rows | code | first fit wall s / CPU s | second fit wall s / CPU s | epochs | "
          "import s |\n|---|---|---|---|---|---|", flush=True)
    got: dict = {}
    for n in (int(v) for v in args.rows.split(",")):
        for name, (src, params) in versions.items():  # interleaved: load hits all alike
            r = got[n, name] = run_child(src, n, args.features, params)
            print(f"| {n:,} | {name} | {r['first'][0]:.2f} / {r['first'][1]:.2f} | "
                  f"{r['second'][0]:.2f} / {r['second'][1]:.2f} | {r['epochs']} | "
                  f"{r['import_s']:.1f} |", flush=True)
    if args.baseline_src and "this" in versions:
        print("\nbaseline / this, first fit wall time: " + ", ".join(
            f"{n:,} rows {got[n, 'baseline']['first'][0] / got[n, 'this']['first'][0]:.1f}x"
            for n, name in got if name == "this"))


if __name__ == "__main__":
    main()
