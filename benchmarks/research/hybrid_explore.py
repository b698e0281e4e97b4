"""How to combine the autoencoder with a supervised head on the time protocol (research notes
behind aedetect.model.hybrid): the autoencoder's features for every row are cached per seed, then
each variant trains its head from the cache.

Run: .venv/bin/python benchmarks/research/hybrid_explore.py --seeds 0 1
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
CACHE = Path(os.environ.get("AEDETECT_RESEARCH_OUT", "runs/research")) / "hybrid"


def features(protocol: str, seed: int):
    path = CACHE / f"{protocol}-{seed}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return {k: z[k] for k in z.files}
    from bench_quality import load

    from aedetect.data.creditcard import CREDITCARD
    from aedetect.model.hybrid import FEATURE_GROUPS, label_rows, residual_features
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    df, _ = load("creditcard")
    tr = train_detector(df, TrainConfig(protocol=protocol, seed=seed), CREDITCARD)
    m, names = residual_features(tr.detector, df[list(CREDITCARD.features)], FEATURE_GROUPS)
    fit, cal = label_rows(tr.split, len(df))
    out = {"m": m, "names": np.array(names), "y": df["Class"].to_numpy().astype(int), "fit": fit, "cal": cal,
           "test": tr.split.test, "validation": tr.split.validation, "train": tr.split.train}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def head(x, y, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier

    with threadpool_limits(1):
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, l2_regularization=1.0,
                                              early_stopping=False, random_state=seed).fit(x, y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--protocol", default="time")
    args = ap.parse_args()
    for seed in args.seeds:
        d = features(args.protocol, seed)
        names = list(d["names"])
        y, m, fit, cal, test = d["y"], d["m"], d["fit"], d["cal"], d["test"]
        raw = [i for i, n in enumerate(names) if not n.startswith("ae_")]
        score = names.index("ae_score")
        heldout = np.sort(np.concatenate([d["validation"], fit[y[fit] == 1]]))
        ae = np.log(np.maximum(m[:, score], 1e-9))
        pr = lambda idx, s: average_precision_score(y[idx], s)  # noqa: E731
        print(f"seed {seed}: fit rows {len(fit)} ({y[fit].sum()} frauds), calibration {len(cal)} "
              f"({y[cal].sum()}), test {len(test)} ({y[test].sum()}); held-out rows {len(heldout)}", flush=True)
        print(f"  autoencoder alone: {pr(test, ae[test]):.3f}", flush=True)
        if args.protocol == "guide":  # every labelled row outside the test set: 12 frauds
            outside = np.setdiff1d(np.arange(len(y)), test)
            groups = {"raw": raw, "raw+score": raw + [score], "all": list(range(m.shape[1])),
                      "raw+contributions": raw + [i for i, n in enumerate(names) if n.startswith("ae_contribution")]}
            for name, cols in groups.items():
                h = head(m[outside][:, cols], y[outside], seed)
                s = h.decision_function(m[test][:, cols])
                print(f"  head {name}, {y[outside].sum()} frauds: test {pr(test, s):.3f}", flush=True)
            continue
        variants = {"raw, fit rows": (raw, fit), "raw, held-out normals": (raw, heldout),
                    "all, held-out normals": (list(range(m.shape[1])), heldout),
                    "raw+score, held-out normals": (raw + [score], heldout)}
        z = {}
        for name, (cols, rows) in variants.items():
            h = head(m[rows][:, cols], y[rows], seed)
            z[name] = {k: h.decision_function(m[idx][:, cols]) for k, idx in (("cal", cal), ("test", test))}
            print(f"  head {name}: test {pr(test, z[name]['test']):.3f}", flush=True)
            # Late fusion: logistic regression on [head log-odds, log AE score], fitted on the
            # calibration window (later than every training row, never the test set).
            for c in (1.0, 0.1):
                lr = LogisticRegression(C=c).fit(np.column_stack([z[name]["cal"], ae[cal]]), y[cal])
                s = lr.decision_function(np.column_stack([z[name]["test"], ae[test]]))
                print(f"    + AE score stacked on the calibration rows (C={c}, weights "
                      f"{np.round(lr.coef_[0], 2).tolist()}): test {pr(test, s):.3f}", flush=True)


if __name__ == "__main__":
    main()
