"""Streaming training from Parquet shards: peak memory against rows read, and the statistics.

Writes shards of 50k generated normal rows, then fits (one epoch, in a fresh process each, so
peak RSS is that fit's own) on the first 20 shards (1M rows) and on 80 shards (4M rows). Memory
should not grow with the rows; the preprocessing statistics of the streaming fit are compared
with an in-memory `Preprocessor.fit` on the same training rows.

    nice -n 5 python benchmarks/bench_shards.py --shards 20 80
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import report, table

ROWS_PER_SHARD = 50_000


def child(folder: Path, out: Path) -> None:
    from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
    from aedetect.data.shards import fit_from_shards
    from aedetect.model.detector import AutoencoderDetector

    det = AutoencoderDetector(hidden_units=(32, 16, 32), epochs=1, seed=0,
                              log_columns=LOG_COLUMNS,
                              periodic_columns=PERIODIC_COLUMNS)
    start = time.perf_counter()
    det, data = fit_from_shards(det, folder, CREDITCARD)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps({"rows": data.n_rows, "n_train": det.n_train_, "peak_mb": peak_mb,
                               "seconds": seconds, "n_validation": det.n_validation_,
                               "mean": det.preprocessor_.mean_.tolist(),
                               "scale": det.preprocessor_.scale_.tolist()}))


def write_shards(folder: Path, n: int) -> None:
    from aedetect.data.generate import generate_transactions

    for i in range(n):
        path = folder / f"part-{i:05d}.parquet"
        if not path.exists():
            generate_transactions(ROWS_PER_SHARD, 0.0, seed=1000 + i).to_parquet(path)


def in_memory_stats(folder: Path):
    """Preprocessor.fit on the streaming fit's training rows, all in memory."""
    from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
    from aedetect.data.shards import _held_out, iter_blocks, shard_files
    from aedetect.model.preprocessing import Preprocessor

    files = shard_files(folder)
    features = list(CREDITCARD.features)
    share = min(0.1, 100_000 / (len(files) * ROWS_PER_SHARD))
    x = np.concatenate([b[~_held_out(0, i, j, len(b), share)]
                        for i, j, b in iter_blocks(files, features, CREDITCARD.label)])
    return Preprocessor(features, LOG_COLUMNS, PERIODIC_COLUMNS).fit(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, nargs="+", default=[20, 80])
    ap.add_argument("--dir", type=Path, default=None, help="where to write the shards (a temp dir)")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    base = args.dir or Path(tempfile.mkdtemp(prefix="aedetect-shards-"))
    write_shards(base, max(args.shards))
    rows, first = [], None
    for n in args.shards:
        folder = base / f"first-{n}"
        folder.mkdir(exist_ok=True)
        for i in range(n):
            link = folder / f"part-{i:05d}.parquet"
            if not link.exists():
                link.symlink_to(base / f"part-{i:05d}.parquet")
        out = folder / "result.json"
        subprocess.run([sys.executable, __file__, "--child", str(folder), str(out)], check=True)
        r = json.loads(out.read_text())
        first = first or r
        growth = 100 * (r["peak_mb"] / first["peak_mb"] - 1)
        rows.append([n, r["rows"], r["n_train"], r["n_validation"], r["peak_mb"], f"{growth:+.1f}%",
                     r["seconds"]])
        print(rows[-1], flush=True)
    ref = in_memory_stats(base / f"first-{args.shards[0]}")
    scale = np.asarray(first["scale"])
    mean_err = float(np.max(np.abs(np.asarray(first["mean"]) - ref.mean_) / ref.scale_))
    scale_err = float(np.max(np.abs(scale - ref.scale_) / ref.scale_))
    body = table(["shards", "rows", "training rows", "validation rows", "peak RSS (MB)",
                  "growth vs first", "fit seconds (1 epoch)"], rows)
    body += (f"\n\nStreaming vs in-memory preprocessing statistics ({args.shards[0]} shards): "
             f"max |mean difference| / scale = {mean_err:.2e}, max relative scale difference = "
             f"{scale_err:.2e} (float32 resolution: 6e-8). Shards of {ROWS_PER_SHARD:,} generated "
             "rows; each fit in a fresh process; timings on a shared machine.")
    report("shards", "Streaming fit from Parquet shards: memory and statistics", body)


if __name__ == "__main__":
    main()
