"""Batch scoring speed: rows/s end to end (read, check, preprocess, score, write) against the
floor (pyarrow reading the same file and doing nothing else) and against IsolationForest.

Runs on the real ULB file as CSV and as Parquet (the same rows), then on generated files of
growing size (`--rows`). Each figure is the best of `--repeats` runs, measured side by side.

    python benchmarks/bench_score.py [--rows 10000,100000,1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from common import OUT_DIR, REAL_DATA, best_of, real_data, report, table

from aedetect.data.creditcard import CREDITCARD


def score_file(model_dir, in_path, out_path) -> int:
    """End-to-end scoring of one file, as `aedetect score` does it (streaming, with the top
    contributing features); returns the row count.

    The one place the benchmark touches the scoring code: point it at another implementation
    to measure that one instead.
    """
    from aedetect.serving.batch import score_file as stream_score
    from aedetect.serving.runtime import load_scorer

    return stream_score(load_scorer(model_dir), in_path, out_path).rows_read


def floor_read(path: Path) -> None:
    """The floor: pyarrow reads the file (all cores) and nothing else happens."""
    if path.suffix == ".csv":
        pacsv.read_csv(path)
    else:
        pq.read_table(path)


def train_model(df, split, model_dir: Path) -> None:
    """A short training (scoring speed does not depend on how well the model is trained)."""
    from aedetect.data.creditcard import LOG_COLUMNS, PERIODIC_COLUMNS
    from aedetect.model.detector import AutoencoderDetector
    from aedetect.training.config import TrainConfig

    # A numbers-only model: the batch scorer's and the service's float fast path.
    det = AutoencoderDetector(log_columns=LOG_COLUMNS, periodic_columns=PERIODIC_COLUMNS,
                              **TrainConfig(epochs=2).detector_params())
    features = list(CREDITCARD.features)
    det.fit(df.iloc[split.train][features], validation_data=df.iloc[split.validation][features])
    det.save(model_dir, overwrite=True)


def parts(model_dir: Path, path: Path, repeats: int) -> dict:
    """Where the time goes, step by step, on one file."""
    from aedetect.data.io import read_raw, write_table
    from aedetect.data.schema import DatasetSchema, validate_frame
    from aedetect.model.detector import load_detector

    def first_score():  # a freshly loaded model traces its scoring graph on first use
        load_detector(model_dir).anomaly_score(x.head(1000))

    det = load_detector(model_dir)
    schema = DatasetSchema.of_numbers(list(det.feature_names_in_), label=CREDITCARD.label)
    df = read_raw(path)
    checked = validate_frame(df, schema, require_label=False, allow_extra=True)
    x = checked[list(schema.features)]
    pre = det.preprocessor_.transform(x.to_numpy())
    det.anomaly_score(x)  # warm the traced scoring function
    out = df.assign(score=0.0, flag=np.int8(0))
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"out{path.suffix}"
        return {
            "load model": best_of(lambda: load_detector(model_dir), repeats),
            "load model + first score of 1,000 rows": best_of(first_score, repeats),
            "read (read_raw)": best_of(lambda: read_raw(path), repeats),
            "check (validate_frame)": best_of(
                lambda: validate_frame(df, schema, require_label=False, allow_extra=True), repeats),
            "preprocess (transform)": best_of(lambda: det.preprocessor_.transform(x.to_numpy()), repeats),
            "network + score (residuals, contributions)": best_of(lambda: det._contributions(pre), repeats),
            "score_samples (all in memory)": best_of(lambda: det.anomaly_score(x), repeats),
            "write (write_table)": best_of(lambda: write_table(out, target), repeats),
        }


def measure(model_dir: Path, path: Path, repeats: int) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"scored{path.suffix}"
        n = score_file(model_dir, path, target)
        e2e = best_of(functools.partial(score_file, model_dir, path, target), repeats)
    return n, e2e, best_of(functools.partial(floor_read, path), repeats)


def iforest_rate(df, split, repeats: int) -> tuple[int, float]:
    from sklearn.ensemble import IsolationForest

    features = list(CREDITCARD.features)
    x = df[features].to_numpy(dtype="float32")
    forest = IsolationForest(n_estimators=100, random_state=0, n_jobs=-1).fit(x[split.train])
    return len(x), best_of(lambda: forest.score_samples(x), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,100000,1000000",
                    help="sizes of the generated files (CSV and Parquet)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from aedetect.data.generate import generate_transactions
    from aedetect.data.io import write_table

    df, split = real_data()
    work = OUT_DIR / "score-work"
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "model"
    train_model(df, split, model_dir)
    parquet = work / "creditcard.parquet"
    write_table(df, parquet)

    rows, breakdown = [], {}
    files = [("ULB creditcard.csv", REAL_DATA), ("ULB as Parquet", parquet)]
    for n in [int(v) for v in args.rows.split(",") if v]:
        gen = generate_transactions(n, 0.01, 0)
        for suffix in (".csv", ".parquet"):
            path = work / f"generated-{n}{suffix}"
            write_table(gen, path)
            files.append((f"generated {n:,} rows {suffix[1:]}", path))
    for label, path in files:
        n, e2e, floor = measure(model_dir, path, args.repeats)
        rows.append([label, n, e2e, n / e2e, floor, n / floor, e2e / floor])
        if path in (REAL_DATA, parquet):
            breakdown[label] = parts(model_dir, path, args.repeats)
        if path.parent == work and path.name.startswith("generated"):
            path.unlink()
    n_if, t_if = iforest_rate(df, split, args.repeats)
    ulb_e2e = rows[0][2]

    body = table(["file", "rows", "end to end s", "rows/s", "pyarrow read s (floor)", "floor rows/s",
                  "x floor"], rows)
    body += ("\n\nEnd to end = `score_file`: load the model, read, check, preprocess, score, write "
             "the scored file (CSV in, CSV out; Parquet in, Parquet out). Best of "
             f"{args.repeats}.\n\n")
    names = list(breakdown)
    steps = list(next(iter(breakdown.values())))
    body += "Where the time goes (seconds, best of each step alone):\n\n" + table(
        ["step", *names], [[s, *(breakdown[n][s] for n in names)] for s in steps])
    body += ("\n\n" + table(["scorer (in memory, ULB rows)", "rows", "s", "rows/s"], [
        ["IsolationForest(100 trees).score_samples", n_if, t_if, n_if / t_if],
        ["aedetect score_samples", n_if, breakdown[names[0]]["score_samples (all in memory)"],
         n_if / breakdown[names[0]]["score_samples (all in memory)"]],
        ["aedetect end to end from CSV", n_if, ulb_e2e, n_if / ulb_e2e],
    ]))
    report("score", "Batch scoring: end to end vs the pyarrow read floor", body)


if __name__ == "__main__":
    main()
