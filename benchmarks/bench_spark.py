"""Spark scoring (local[2]) beside the single-process scorer, on the same Parquet file.

Both read the same Parquet and write Parquet with ids, score, flag and the top-3 features. The
single-process figure is `score_file` (what `aedetect score` runs) with the model already
loaded; the Spark figures are a whole `score(df).write.parquet(...)` job after a first job has
started the Python workers and loaded the model in each (its time is shown apart). Spark's worth
is scaling out and reading the lake where it lives, not speed on one small node.

    nice -n 5 python benchmarks/bench_spark.py --rows 200000 --master local[2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import Timer, report, table


def model(folder: Path) -> Path:
    from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
    from aedetect.data.generate import generate_transactions
    from aedetect.model.detector import AutoencoderDetector

    df = generate_transactions(20_000, 0.0, seed=1)
    det = AutoencoderDetector(epochs=3, log_columns=LOG_COLUMNS,
                              periodic_columns=PERIODIC_COLUMNS, seed=0)
    det.fit(df[list(CREDITCARD.features)])
    return det.save(folder / "model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    import numpy as np
    from pyspark.sql import SparkSession

    from aedetect.data.generate import generate_transactions
    from aedetect.model.detector import load_detector
    from aedetect.serving.batch import score_file
    from aedetect.serving.spark import score

    work = Path(tempfile.mkdtemp(prefix="aedetect-bench-spark-"))
    try:
        model_dir = model(work)
        df = generate_transactions(args.rows, 0.01, seed=2).drop(columns="Class")
        df.insert(0, "txn_id", np.arange(len(df), dtype="int64"))
        data = work / "data.parquet"
        df.to_parquet(data)

        det = load_detector(model_dir)
        single = []
        for i in range(args.repeats):
            with Timer() as t:
                score_file(det, data, work / f"single-{i}.parquet", id_columns=["txn_id"], top_k=3)
            single.append(t.seconds)

        spark = (SparkSession.builder.master(args.master).config("spark.ui.enabled", "false")
                 .getOrCreate())
        sdf = spark.read.parquet(str(data))
        with Timer() as first:
            score(sdf, model_dir, id_columns=["txn_id"]).write.parquet(str(work / "spark-first"))
        runs = []
        for i in range(args.repeats):
            with Timer() as t:
                score(sdf, model_dir, id_columns=["txn_id"]).write.parquet(str(work / f"spark-{i}"))
            runs.append(t.seconds)
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s, k = min(single), min(runs)
    rows = [["aedetect score (one process, model loaded)", args.rows / s, s, "1.00x"],
            [f"Spark {args.master}, mapInArrow, warm workers", args.rows / k, k, f"{s / k:.2f}x"],
            [f"Spark {args.master}, first job (workers start, model loads)", args.rows / first.seconds,
             first.seconds, f"{s / first.seconds:.2f}x"]]
    body = table(["path", "rows/s", "seconds", "speed vs one process"], rows)
    body += (f"\n\n{args.rows:,} generated rows, Parquet in and out, top-3 features; best of "
             f"{args.repeats}. Timings on a shared machine.")
    report("spark", "Spark scoring beside the single-process scorer", body)


if __name__ == "__main__":
    main()
