"""Development suite: aedetect's defaults beside common detectors on public tabular sets.

The sets are the ADBench sets in benchmarks/data/adbench (see the README there). Protocol, for
each set and seed: a stratified 70/30 split; every detector is fitted on the normal rows of the
70% (at most 50,000 rows; labels are used for nothing else) and scores the 30%; PR-AUC (average
precision) and ROC-AUC on that 30%. All detectors run in the same process, one after the other on
the same split, so their fit times are comparable within a run.

    python benchmarks/bench_suite.py                     # what `make bench-suite` runs: 3 seeds
    python benchmarks/bench_suite.py --seeds 1 --sets 18_Ionosphere,47_yeast
    python benchmarks/bench_suite.py --methods aedetect --aedetect score=mse --label mse

Baselines: IsolationForest (scikit-learn, 100 trees), ECOD and AutoEncoder from PyOD (their
defaults: PyOD's AutoEncoder is 64-32 ReLU with batch norm and dropout, 10 epochs at batch 32),
a plain Keras 20-8-20 tanh autoencoder (MSE, Adam 1e-3, batch 32, up to 50 epochs with early
stopping on 10% of the rows, standardised inputs) and the Mahalanobis distance on the
standardised inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One thread for every library: the methods' fit times compare like with like, and on a shared
# 2-core machine extra threads only wait for each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from common import OUT_DIR, machine  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

DATA = Path(__file__).parent / "data" / "adbench"
MAX_TRAIN = 50_000


def load_sets(names: list[str] | None = None, folder: Path = DATA) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The ADBench sets of `folder` (by default the 12 of the development suite), by name."""
    paths = sorted(folder.glob("*.npz"), key=lambda p: int(p.stem.split("_")[0]))
    out = {}
    for p in paths:
        if names and p.stem not in names:
            continue
        with np.load(p, allow_pickle=False) as d:
            out[p.stem] = (d["X"].astype("float64"), d["y"].astype("int64"))
    missing = set(names or ()) - set(out)
    if missing:
        raise SystemExit(f"unknown set(s) {sorted(missing)}; see {folder}")
    return out


def split(X, y, seed: int):
    """Stratified 70/30 split; training rows = the normals of the 70% (at most 50,000)."""
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
    normals = tr[y[tr] == 0]
    if len(normals) > MAX_TRAIN:
        normals = np.random.default_rng(seed).choice(normals, MAX_TRAIN, replace=False)
    return X[normals], X[te], y[te]


def _standardise(x_train):
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return lambda x: (x - mean) / std


# -- detectors: fit(x_train, seed) -> score function (higher = more anomalous) ---------------------
def fit_aedetect(x, seed, params=None):
    from aedetect.model.detector import AutoencoderDetector

    det = AutoencoderDetector(seed=seed, **(params or {})).fit(x)
    return det.anomaly_score


def fit_iforest(x, seed):
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=100, random_state=seed, n_jobs=1).fit(x)
    return lambda z: -model.score_samples(z)


def fit_ecod(x, seed):
    from pyod.models.ecod import ECOD

    model = ECOD().fit(x)
    return model.decision_function


def fit_pyod_ae(x, seed):
    from pyod.models.auto_encoder import AutoEncoder

    model = AutoEncoder(random_state=seed, verbose=0).fit(x)
    return model.decision_function


def fit_keras_20_8_20(x, seed):
    import keras

    keras.utils.set_random_seed(seed)
    scale = _standardise(x)
    xs = scale(x).astype("float32")
    inputs = keras.Input(shape=(x.shape[1],))
    h = keras.layers.Dense(20, activation="tanh")(inputs)
    h = keras.layers.Dense(8, activation="tanh")(h)
    h = keras.layers.Dense(20, activation="tanh")(h)
    model = keras.Model(inputs, keras.layers.Dense(x.shape[1])(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    stop = keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)
    model.fit(xs, xs, epochs=50, batch_size=32, validation_split=0.1, callbacks=[stop], verbose=0)

    def score(z):
        zs = scale(z).astype("float32")
        return np.mean((model.predict(zs, batch_size=4096, verbose=0) - zs) ** 2, axis=1)

    return score


def fit_mahalanobis(x, seed):
    from sklearn.covariance import EmpiricalCovariance

    scale = _standardise(x)
    cov = EmpiricalCovariance().fit(scale(x))
    return lambda z: cov.mahalanobis(scale(z))


BASELINES = {
    "IsolationForest": fit_iforest,
    "ECOD": fit_ecod,
    "PyOD AutoEncoder": fit_pyod_ae,
    "Keras 20-8-20": fit_keras_20_8_20,
    "Mahalanobis": fit_mahalanobis,
}


def single_thread() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    try:  # PyOD's AutoEncoder only (pip install torch==2.13.0)
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def warm_up(methods) -> None:
    """Fit each method once on a small generated set first, so imports and one-time
    compilation (numba, torch, TensorFlow) do not count against whichever method runs first."""
    x = np.random.default_rng(0).normal(size=(200, 5))
    for fit in methods.values():
        fit(x, 0)(x)


# Ablations of the default rule: shown per set, left out of the ranking.
ABLATIONS = {
    "ablation: score mse": lambda x, seed: fit_aedetect(x, seed, {"score": "mse"}),
}


def run(sets, seeds, methods, log: Path | None = None) -> list[dict]:
    """Every method on every set and seed; each result is also appended to `log` (JSON lines)
    as it comes, so a long run that is stopped keeps what it measured."""
    rows = []
    for name, (X, y) in sets.items():
        for seed in seeds:
            x_train, x_test, y_test = split(X, y, seed)
            for method, fit in methods.items():
                start = time.perf_counter()
                score = fit(x_train, seed)
                fit_s = time.perf_counter() - start
                s = np.asarray(score(x_test), dtype="float64")
                row = {"set": name, "seed": seed, "method": method, "fit_s": fit_s,
                       "n_train": len(x_train), "pr_auc": float(average_precision_score(y_test, s)),
                       "roc_auc": float(roc_auc_score(y_test, s))}
                rows.append(row)
                if log is not None:
                    with log.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                print(f"{name} seed {seed} {method}: PR-AUC {row['pr_auc']:.3f} ROC-AUC "
                      f"{row['roc_auc']:.3f} fit {fit_s:.2f} s", flush=True)
    return rows


def fit_timing(sizes: list[int], repeats: int = 2) -> str:
    """Wall and CPU seconds of one fit on generated rows (20 features on a 10-dim plane), the
    defaults beside PyOD's AutoEncoder and the plain Keras autoencoder, best of `repeats`."""
    rng = np.random.default_rng(0)
    methods = {"aedetect": fit_aedetect, "PyOD AutoEncoder": fit_pyod_ae,
               "Keras 20-8-20": fit_keras_20_8_20}
    lines = ["| rows | " + " | ".join(f"{m} wall s / CPU s" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for n in sizes:
        x = rng.normal(size=(n, 10)) @ rng.normal(size=(10, 20))
        cells = []
        for fit in methods.values():
            best = None
            for _ in range(repeats):
                wall, cpu = time.perf_counter(), time.process_time()
                fit(x, 0)
                t = (time.perf_counter() - wall, time.process_time() - cpu)
                best = t if best is None or t[0] < best[0] else best
            cells.append(f"{best[0]:.2f} / {best[1]:.2f}")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def _mean(rows, key, **where) -> float:
    v = [r[key] for r in rows if all(r[k] == w for k, w in where.items())]
    return float(np.mean(v)) if v else float("nan")


def ranks(rows) -> dict[str, float]:
    """Mean rank by PR-AUC (1 = best, ties share the average rank) over every set and seed."""
    from scipy.stats import rankdata

    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m not in ABLATIONS]
    got: dict[str, list[float]] = {m: [] for m in methods}
    for key in dict.fromkeys((r["set"], r["seed"]) for r in rows):
        part = {r["method"]: r["pr_auc"] for r in rows
                if (r["set"], r["seed"]) == key and r["method"] in methods}
        if set(part) != set(methods):
            continue
        for m, rank in zip(methods, rankdata([-part[m] for m in methods]), strict=True):
            got[m].append(float(rank))
    return {m: float(np.mean(v)) for m, v in got.items()}


def markdown(rows, seeds) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sets = list(dict.fromkeys(r["set"] for r in rows))
    head = "| set | rows | " + " | ".join(methods) + " |\n|" + "---|" * (len(methods) + 2)
    out = []
    for metric, title in (("pr_auc", "PR-AUC"), ("roc_auc", "ROC-AUC"), ("fit_s", "Fit seconds")):
        lines = [f"#### {title} per set (mean over seeds {', '.join(map(str, seeds))})", "", head]
        for s in sets:
            vals = {m: _mean(rows, metric, set=s, method=m) for m in methods}
            best = (min if metric == "fit_s" else max)(vals.values())
            n = next(r["n_train"] for r in rows if r["set"] == s)
            digits = 2 if metric == "fit_s" else 3
            cells = [f"**{v:.{digits}f}**" if v == best else f"{v:.{digits}f}" for v in vals.values()]
            lines.append(f"| {s} | {n:,} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    rank = ranks(rows)
    lines = ["#### Summary (mean over sets and seeds)", "",
             "| method | PR-AUC | ROC-AUC | mean rank (PR-AUC) | total fit s | fit s vs PyOD AE |",
             "|---|---|---|---|---|---|"]
    total = {m: sum(r["fit_s"] for r in rows if r["method"] == m) for m in methods}
    pyod = total.get("PyOD AutoEncoder")
    for m in methods:
        ratio = f"{total[m] / pyod:.2f}" if pyod else "-"
        r = f"{rank[m]:.2f}" if m in rank else "-"
        lines.append(f"| {m} | {_mean(rows, 'pr_auc', method=m):.3f} | "
                     f"{_mean(rows, 'roc_auc', method=m):.3f} | {r} | {total[m]:.1f} | "
                     f"{ratio} |")
    out.append("\n".join(lines))
    out.append("rows = training normals (70% split). Fit seconds: wall time of `fit`, one "
               "thread per library, all methods one after the other in the same process (after "
               "one warm-up fit each), so their ratios are fair; absolute seconds depend on the "
               "machine's load.")
    return "\n\n".join(out)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sets", default="", help="comma-separated set names (default: all)")
    ap.add_argument("--suite-dir", type=Path, default=DATA,
                    help="a folder of ADBench .npz files (default: the development suite's 12, "
                         "benchmarks/data/adbench; all 26 classical sets: ADBench's "
                         "adbench/datasets/Classical)")
    ap.add_argument("--methods", default="", help="comma-separated, e.g. aedetect,ECOD")
    ap.add_argument("--aedetect", nargs="*", default=[], metavar="KEY=JSON",
                    help="detector parameters, e.g. score='\"mse\"' epochs=20")
    ap.add_argument("--label", default="aedetect", help="name of the aedetect row")
    ap.add_argument("--ablations", action="store_true",
                    help="add the default rule with the MSE score")
    ap.add_argument("--out", default=str(OUT_DIR / "suite.md"))
    ap.add_argument("--timing-rows", metavar="N,N",
                    help="only time single fits on generated sets of these sizes, e.g. 300,1000")
    ap.add_argument("--tables-from", metavar="JSONL",
                    help="only write the tables from the results log of an earlier run")
    args = ap.parse_args()
    out = Path(args.out)
    if args.timing_rows:
        single_thread()
        warm_up({"aedetect": fit_aedetect, "pyod": fit_pyod_ae, "keras": fit_keras_20_8_20})
        text = (f"## Fit time, one thread, best of 2\n\nMachine: {machine()}\n\n"
                f"{fit_timing([int(n) for n in args.timing_rows.split(',')])}\n")
        print("\n" + text)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        return
    if args.tables_from:
        rows = [json.loads(line) for line in Path(args.tables_from).read_text().splitlines()]
        write(rows, out)
        return
    params = {}
    for kv in args.aedetect:
        k, v = kv.split("=", 1)
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    methods = {args.label: lambda x, seed: fit_aedetect(x, seed, params), **BASELINES}
    if args.ablations:
        methods.update(ABLATIONS)
    if args.methods:
        wanted = args.methods.split(",")
        methods = {m: f for m, f in methods.items() if m in wanted or
                   (m == args.label and "aedetect" in wanted)}
    sets = load_sets([s for s in args.sets.split(",") if s] or None, args.suite_dir)
    seeds = list(range(args.seeds))
    single_thread()
    warm_up(methods)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".jsonl")
    log.unlink(missing_ok=True)
    write(run(sets, seeds, methods, log), out)


def write(rows: list[dict], out: Path) -> None:
    seeds = sorted({r["seed"] for r in rows})
    n_sets = len({r["set"] for r in rows})
    text = (f"## Development suite: {n_sets} ADBench sets, seeds {seeds}\n\n"
            f"Machine: {machine()}\n\n{markdown(rows, seeds)}\n")
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
