"""How training and scoring time grow with rows and with width, on generated data.

Rows: generated credit-card rows (`--rows`), training epochs and in-memory scoring.
Width: `--width` columns of low-rank Gaussian data with noise, at `--width-rows` rows.
The growth exponent b fits time ~ size^b over the sizes run (b = 1: linear).

    python benchmarks/bench_growth.py [--rows 10000,100000,1000000] [--width 30,100,300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import best_of, report, table

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
from aedetect.model.detector import AutoencoderDetector

EPOCHS = 4


class _EpochTimes:
    def __new__(cls):
        import keras

        class EpochTimes(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_test_begin(self, logs=None):
                self.seconds.append(time.perf_counter() - self.start)

        return EpochTimes()


def run(x: np.ndarray, **params) -> tuple[float, float]:
    """Seconds per training epoch (the fastest after the first: the least disturbed by other
    work on the machine) and in-memory scoring seconds (best of 2)."""
    timer = _EpochTimes()
    det = AutoencoderDetector(epochs=EPOCHS, patience=EPOCHS, **params).fit(x, callbacks=[timer])
    det.anomaly_score(x[:1000])
    return min(timer.seconds[1:]), best_of(lambda: det.anomaly_score(x), 2)


def exponent(sizes, seconds) -> float:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def low_rank(n: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6)).astype("float32")
    w = rng.normal(size=(6, width)).astype("float32")
    return np.tanh(z @ w) + 0.1 * rng.normal(size=(n, width)).astype("float32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,100000,1000000")
    ap.add_argument("--width", default="30,100,300")
    ap.add_argument("--width-rows", type=int, default=100_000)
    args = ap.parse_args()
    from aedetect.data.generate import generate_transactions

    sizes = [int(v) for v in args.rows.split(",") if v]
    by_rows = []
    for n in sizes:
        df = generate_transactions(n, 0.0, 0)[list(CREDITCARD.features)]
        epoch, score = run(df, log_columns=LOG_COLUMNS,
                           periodic_columns=PERIODIC_COLUMNS)
        by_rows.append([n, epoch, epoch / n * 1e6, score, score / n * 1e6])
    widths = [int(v) for v in args.width.split(",") if v]
    by_width = []
    for w in widths:
        epoch, score = run(low_rank(args.width_rows, w))
        by_width.append([w, epoch, epoch / args.width_rows * 1e6, score, score / args.width_rows * 1e6])

    def verdict(b):
        return "linear" if 0.8 <= b <= 1.2 else ("sub-linear" if b < 0.8 else "super-linear")

    heads = ["s/epoch (best)", "µs/row/epoch", "score s", "µs/row scored"]
    b_train = exponent(sizes, [r[1] for r in by_rows])
    b_score = exponent(sizes, [r[3] for r in by_rows])
    body = ("Rows (generated credit-card rows, detector defaults: auto 64-32-code-32-64 network, "
            "residual-Mahalanobis score, "
            f"{EPOCHS} epochs):\n\n" + table(["rows", *heads], by_rows)
            + f"\n\nGrowth exponent over rows: training b = {b_train:.2f} ({verdict(b_train)}), "
              f"scoring b = {b_score:.2f} ({verdict(b_score)}).\n\n")
    if len(widths) > 1:
        wt = exponent(widths, [r[1] for r in by_width])
        ws = exponent(widths, [r[3] for r in by_width])
        body += (f"Width ({args.width_rows:,} rows of low-rank data, detector defaults):\n\n"
                 + table(["columns", *heads], by_width)
                 + f"\n\nGrowth exponent over width: training b = {wt:.2f} ({verdict(wt)}), "
                   f"scoring b = {ws:.2f} ({verdict(ws)}).")
    report("growth", "Growth with rows and width", body)


if __name__ == "__main__":
    main()
