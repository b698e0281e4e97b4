"""Learning curve on the real ULB data: PR-AUC against the number of training normals.

Why training stays on one node, fed by a sample: if quality saturates at a few tens of thousands
of normals, a seeded sample of the lake (`aedetect.serving.spark.sample_normals`) loses nothing against
training on everything. Guide protocol split; the training normals are subsampled (seeded) to
each size, the validation normals and the test set are the same for every size; PR-AUC on the
test set; default detector with the epochs capped (--epochs) to keep the run bounded.

    nice -n 5 python benchmarks/bench_sample_size.py --sizes 5000 20000 60000 all --seeds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import median, real_data, report, table


def run(df, split, n_train: int | None, seed: int, epochs: int) -> dict:
    from aedetect.data.creditcard import CREDITCARD
    from aedetect.evaluation.metrics import evaluate_scores
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import new_detector

    features = list(CREDITCARD.features)
    rows = split.train
    if n_train is not None and n_train < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, n_train, replace=False))
    det = new_detector(TrainConfig(seed=seed, epochs=epochs), CREDITCARD)
    start = time.perf_counter()
    det.fit(df.iloc[rows][features], validation_data=df.iloc[split.validation][features])
    seconds = time.perf_counter() - start
    test = df.iloc[split.test]
    m = evaluate_scores(test["Class"].to_numpy(), det.anomaly_score(test[features]), det.threshold_)
    return {"pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"], "seconds": seconds,
            "epochs": det.n_epochs_, "n": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["5000", "20000", "60000", "all"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30, help="at most (early stopping may end sooner)")
    args = ap.parse_args()
    df, split = real_data()
    sizes = [None if size == "all" else int(size) for size in args.sizes]
    results: dict = {n: [] for n in sizes}
    for seed in range(args.seeds):  # every size once before the next seed: partial runs still compare
        for n in sizes:
            r = run(df, split, n, seed, args.epochs)
            results[n].append(r)
            print(f"n={r['n']} seed={seed}: PR-AUC {r['pr_auc']:.4f} ROC-AUC {r['roc_auc']:.4f} "
                  f"{r['epochs']} epochs {r['seconds']:.0f} s", flush=True)
    rows = []
    for runs in results.values():
        pr = [r["pr_auc"] for r in runs]
        rows.append([runs[0]["n"], median(pr), float(np.min(pr)), float(np.max(pr)),
                     median([r["roc_auc"] for r in runs]), median([r["seconds"] for r in runs])])
    best = max(r[1] for r in rows)
    for r in rows:
        r.insert(4, r[1] - best)
    body = table(["training normals", "PR-AUC (median)", "min", "max", "vs best", "ROC-AUC",
                  "fit seconds (median)"], rows)
    body += (f"\n\n{args.seeds} seeds per size (seed = subsample and weights); guide split; default "
             f"detector, at most {args.epochs} epochs. Timings on a shared machine.")
    report("sample_size", "Learning curve: PR-AUC by number of training normals (ULB)", body)


if __name__ == "__main__":
    main()
