"""Training speed and quality on the real ULB data: aedetect vs plain Keras vs PyOD.

Same 20-8-20 tanh network, same guide split, same preprocessing, same training normals:
  aedetect   `train_detector` with its defaults (early stopping on validation normals)
  keras      `model.fit(x, x, batch_size=256)` with the same early stopping
  pyod       PyOD's AutoEncoder (PyTorch, CPU) with hidden_neuron_list=[20, 8] (so 20-8-20),
             tanh, no batch norm/dropout/weight decay, batch 256, a fixed number of epochs
             (PyOD has no early stopping)
Reports seconds per epoch over the training normals (median, first epoch excluded: it holds
the graph/XLA compilation), wall time to the early-stopping point, epochs and test PR-AUC.

    python benchmarks/bench_train.py [--pyod-epochs 10] [--max-epochs 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import Timer, median, real_data, report, table

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
from aedetect.evaluation.metrics import evaluate_scores
from aedetect.training.config import PRESETS, TrainConfig

FEATURES = list(CREDITCARD.features)


def epoch_timer():
    """A Keras callback recording the training part of each epoch (validation excluded)."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self._start = self._end = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._end = (time.perf_counter(), time.process_time()), None

        def on_test_begin(self, logs=None):
            if self._start is not None and self._end is None:
                self._end = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            end = self._end or (time.perf_counter(), time.process_time())
            self.seconds.append(end[0] - self._start[0])
            self.cpu_seconds.append(end[1] - self._start[1])

    return EpochTimes()


def per_epoch(seconds: list[float]) -> float:
    return median(seconds[1:] if len(seconds) > 1 else seconds)


# The guide's 20-8-20 tanh network and MSE score, as the peers run it, at aedetect's fast
# settings (batch 2048, learning rate 3e-3: same PR-AUC as batch 256 at 1e-3, docs/performance.md).
GUIDE_FAST = {**PRESETS["guide"], "batch_size": 2048, "learning_rate": 3e-3}


def bench_aedetect(df, max_epochs: int, overrides: dict, label: str):
    from aedetect.training.workflow import evaluate_detector, train_detector

    config = TrainConfig(**{**overrides, "epochs": max_epochs})
    timer = epoch_timer()
    with Timer() as t:
        result = train_detector(df, config, CREDITCARD, callbacks=[timer])
    det = result.detector
    pr_auc = evaluate_detector(det, df, result.split.test)["pr_auc"]
    return dict(name=f"aedetect {label} (batch {config.param('batch_size')}, lr {config.param('learning_rate'):g})",
                epoch=per_epoch(timer.seconds), cpu=per_epoch(timer.cpu_seconds),
                first=timer.seconds[0], wall=t.seconds, epochs=det.n_epochs_, best=det.best_epoch_, pr_auc=pr_auc)


def prepared(df, split):
    """Training, validation and test rows through the same preprocessing aedetect fits."""
    from aedetect.model.preprocessing import Preprocessor

    raw = {k: df.iloc[getattr(split, k)][FEATURES].to_numpy() for k in ("train", "validation", "test")}
    pre = Preprocessor(FEATURES, LOG_COLUMNS, PERIODIC_COLUMNS).fit(raw["train"])
    y_test = df.iloc[split.test][CREDITCARD.label].to_numpy()
    return pre.transform(raw["train"]), pre.transform(raw["validation"]), pre.transform(raw["test"]), y_test


def bench_keras(x, xv, xt, yt, max_epochs: int):
    import keras

    from aedetect.model.network import build_autoencoder

    keras.utils.set_random_seed(0)
    model = build_autoencoder(x.shape[1], (20, 8, 20), "tanh")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    timer = epoch_timer()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    with Timer() as t:
        hist = model.fit(x, x, batch_size=256, epochs=max_epochs, validation_data=(xv, xv),
                         callbacks=[stop, timer], verbose=0)
    scores = np.mean((model.predict(xt, batch_size=8192, verbose=0) - xt) ** 2, axis=1)
    val = hist.history["val_loss"]
    return dict(name="Keras model.fit(x, x) (batch 256, lr 0.001)", epoch=per_epoch(timer.seconds),
                cpu=per_epoch(timer.cpu_seconds), first=timer.seconds[0], wall=t.seconds, epochs=len(val),
                best=int(np.argmin(val)) + 1, pr_auc=evaluate_scores(yt, scores, 1.0)["pr_auc"])


def bench_pyod(x, xt, yt, epochs: int):
    try:
        from pyod.models.auto_encoder import AutoEncoder
    except ImportError:
        print("PyOD is not installed (pip install -e '.[bench]'); skipping it")
        return None
    import torch

    model = AutoEncoder(hidden_neuron_list=[20, 8], hidden_activation_name="tanh", batch_norm=False,
                        dropout_rate=0.0, optimizer_params={"weight_decay": 0.0}, lr=1e-3,
                        epoch_num=epochs, batch_size=256, preprocessing=False, random_state=0,
                        verbose=0, device="cpu")
    cpu = time.process_time()
    with Timer() as t:
        model.fit(x)
    cpu = time.process_time() - cpu
    scores = model.decision_function(xt)
    return dict(name=f"PyOD AutoEncoder, torch {torch.__version__} (batch 256, lr 0.001)",
                epoch=t.seconds / epochs, cpu=cpu / epochs, first=float("nan"), wall=t.seconds, epochs=epochs,
                best=epochs, pr_auc=evaluate_scores(yt, scores, float(np.median(scores)))["pr_auc"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-epochs", type=int, default=50)
    ap.add_argument("--pyod-epochs", type=int, default=5)
    args = ap.parse_args()

    df, split = real_data()
    x, xv, xt, yt = prepared(df, split)
    results = [bench_aedetect(df, args.max_epochs, GUIDE_FAST, "20-8-20 tanh, MSE"),
               bench_keras(x, xv, xt, yt, args.max_epochs)]
    pyod = bench_pyod(x, xt, yt, args.pyod_epochs)
    if pyod:
        results.append(pyod)
    # aedetect's own defaults (a wider network, residual Mahalanobis score): what the time and
    # the PR-AUC of the default configuration are, beside the like-for-like rows above.
    results.append(bench_aedetect(df, args.max_epochs, {}, "defaults: 64-32-16-32-64 relu, residual Mahalanobis"))
    ours = results[0]
    rows = [[r["name"], r["epoch"], r["epoch"] / ours["epoch"], r["cpu"], r["cpu"] / ours["cpu"], r["first"],
             r["epochs"], r["best"], r["wall"], r["pr_auc"]] for r in results]
    body = (f"{len(x):,} training normals, {len(xv):,} validation normals, {len(xt):,} test rows "
            f"({int(yt.sum())} frauds). Rows 1-3: the same 20-8-20 tanh network and MSE score; the last "
            "row is aedetect's default configuration.\n\n"
            + table(["trainer", "s/epoch", "x aedetect", "CPU s/epoch", "CPU x aedetect",
                     "1st epoch s (compile)", "epochs run",
                     "best epoch", "wall to stop s", "test PR-AUC"], rows)
            + "\n\ns/epoch: median over epochs 2.., training rows only (validation excluded); "
              "CPU s/epoch: the process CPU seconds over the same span (less disturbed by other work "
              "on a shared machine); PyOD: "
              "its fit time / epochs (no early stopping in PyOD, fixed epochs).")
    report("train", "Training: aedetect vs Keras fit vs PyOD (real ULB data)", body)


if __name__ == "__main__":
    main()
