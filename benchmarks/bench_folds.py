"""Defaults judged on data they were not chosen on: leave-sets-out over the development suite.

The suite's sets are cut into folds (seeded, whole sets). For each fold, the candidate settings
are ranked by their mean PR-AUC on the *other* folds and the best is kept; the kept candidate
and every baseline are then reported on the held-out fold only. The figure that counts is the
mean over all held-out sets: a choice that only fits the sets it was made on shows here as a
loss. The same table reports the best baseline twice: chosen like the candidate (on the other
folds) and, stricter, the best one on the held-out fold itself (hindsight).

Input: the results logs (JSON lines) of `bench_suite.py` runs over the same sets and seeds,
one per candidate and one with the baselines. DIR is a folder of ADBench `.npz` files: the 12
of the development suite (`benchmarks/data/adbench`, the default) or all 26 classical sets
(ADBench, github.com/Minqi824/ADBench, folder `adbench/datasets/Classical`; see
benchmarks/data/adbench/README.md for the commit and licences), e.g.

    python benchmarks/bench_suite.py --suite-dir DIR --out runs/bench/all.md \
        --methods IsolationForest,ECOD,"PyOD AutoEncoder","Keras 20-8-20",Mahalanobis
    python benchmarks/bench_suite.py --suite-dir DIR --methods aedetect \
        --aedetect members=1 --label members=1 --out runs/bench/all-m1.md
    python benchmarks/bench_suite.py --suite-dir DIR --methods aedetect \
        --aedetect members=3 --label members=3 --out runs/bench/all-m3.md
    python benchmarks/bench_folds.py runs/bench/all.jsonl runs/bench/all-m1.jsonl \
        runs/bench/all-m3.jsonl --candidates members=1,members=3 --folds 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(paths: list[str]) -> dict[str, dict[str, float]]:
    """{method: {set: mean PR-AUC over seeds}} from results logs."""
    got: dict[str, dict[str, list[float]]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            got.setdefault(r["method"], {}).setdefault(r["set"], []).append(r["pr_auc"])
    return {m: {s: float(np.mean(v)) for s, v in by_set.items()} for m, by_set in got.items()}


def folds_of(sets: list[str], n_folds: int, seed: int) -> list[list[str]]:
    order = np.random.default_rng(seed).permutation(sorted(sets))
    return [sorted(order[i::n_folds].tolist()) for i in range(n_folds)]


def leave_sets_out(pr: dict[str, dict[str, float]], candidates: list[str], baselines: list[str],
                   n_folds: int, seed: int) -> tuple[list[dict], dict]:
    sets = sorted(set.intersection(*(set(pr[m]) for m in candidates + baselines)))
    rows, held = [], {"chosen": [], "best baseline (chosen)": [], "best baseline (hindsight)": []}
    mean = lambda m, part: float(np.mean([pr[m][s] for s in part]))  # noqa: E731
    for i, fold in enumerate(folds_of(sets, n_folds, seed)):
        rest = [s for s in sets if s not in fold]
        chosen = max(candidates, key=lambda m: mean(m, rest))
        base_rest = max(baselines, key=lambda m: mean(m, rest))
        base_held = max(baselines, key=lambda m: mean(m, fold))
        rows.append({"fold": i, "sets": fold, "chosen": chosen, "chosen_pr": mean(chosen, fold),
                     "candidates": {m: mean(m, fold) for m in candidates},
                     "baselines": {m: mean(m, fold) for m in baselines},
                     "base_rest": base_rest, "base_held": base_held})
        for s in fold:
            held["chosen"].append(pr[chosen][s])
            held["best baseline (chosen)"].append(pr[base_rest][s])
            held["best baseline (hindsight)"].append(pr[base_held][s])
    return rows, {k: float(np.mean(v)) for k, v in held.items()}


def markdown(rows: list[dict], held: dict, candidates: list[str], baselines: list[str]) -> str:
    names = candidates + baselines
    lines = ["| fold | held-out sets | chosen on the other folds | " + " | ".join(names) + " |",
             "|" + "---|" * (3 + len(names))]
    for r in rows:
        vals = {**r["candidates"], **r["baselines"]}
        lines.append(f"| {r['fold']} | {', '.join(r['sets'])} | {r['chosen']} | "
                     + " | ".join(f"{vals[m]:.3f}" for m in names) + " |")
    n = sum(len(r["sets"]) for r in rows)
    lines += ["", f"Mean PR-AUC over the {n} held-out sets (each set held out once):", "",
              "| system | PR-AUC |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in held.items()]
    gain = held["chosen"] - held["best baseline (chosen)"]
    strict = held["chosen"] - held["best baseline (hindsight)"]
    lines += ["", f"Chosen defaults minus the best baseline: {gain:+.3f} (baseline chosen on the "
              f"other folds), {strict:+.3f} (the best baseline of each held-out fold)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", help="bench_suite.py results logs (.jsonl)")
    ap.add_argument("--candidates", required=True, help="comma-separated method names to choose from")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the tables here")
    args = ap.parse_args()
    pr = load(args.logs)
    candidates = [c for c in args.candidates.split(",") if c]
    unknown = [c for c in candidates if c not in pr]
    if unknown:
        raise SystemExit(f"no results for {unknown}; the logs hold {sorted(pr)}")
    baselines = [m for m in pr if m not in candidates and not m.startswith("ablation")]
    rows, held = leave_sets_out(pr, candidates, baselines, args.folds, args.seed)
    text = (f"## Leave-sets-out: {args.folds} folds (seed {args.seed}), candidates "
            f"{', '.join(candidates)}\n\n" + markdown(rows, held, candidates, baselines) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
