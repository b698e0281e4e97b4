"""Time-ordered protocol, one split: hour-of-day features (sin/cos of Time) kept or Time dropped,
with the MSE and the residual-Mahalanobis score, through aedetect's own training pipeline.

Run: .venv/bin/python benchmarks/research/time_features.py [--epochs 40]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.data.fetch import fetch_creditcard  # noqa: E402
from aedetect.data.io import read_table  # noqa: E402
from aedetect.training.config import TrainConfig  # noqa: E402
from aedetect.training.workflow import evaluate_detector, train_detector  # noqa: E402

NO_TIME = CREDITCARD.model_copy(update={"time_feature": False})  # Time splits, but is not read
KEYS = ("roc_auc", "pr_auc", "recall_at_precision_0_93", "precision", "recall", "f1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    df = read_table(fetch_creditcard())
    for name, schema in (("hour of day", CREDITCARD), ("Time dropped", NO_TIME)):
        for score in ("mse", "residual_mahalanobis"):
            cfg = TrainConfig(protocol="time", seed=0, hidden_units=[64, 32, 16, 32, 64],
                              activation="relu", batch_size=2048, epochs=args.epochs, score=score)
            start = time.perf_counter()
            r = train_detector(df, cfg, schema)
            m = evaluate_detector(r.detector, df, r.split.test, schema)
            print(f"{name:<13} {score:<21} " + " ".join(f"{k} {m[k]:.3f}" for k in KEYS)
                  + f"  test frauds {m['n_test_fraud']}, {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
