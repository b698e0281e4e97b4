"""Unlabelled anomalies among the training rows: how much PR-AUC they cost, plain fit vs robust fit.

For each contamination level c (a share of the training normals), that many true anomalies that
are not in the test set join the training rows as if they were normal; the detector trains with
its default settings, once plain and once with `robust=Q` for each share Q the robust fit
trims (`--robust`, 0.02 and 0.05 by default), and PR-AUC (average precision) is measured on the untouched test
set, the same for every level. The anomalies added at a lower level are part of every higher one.

  suite     ADBench sets of the development suite (benchmarks/data/adbench, as bench_suite.py):
            the stratified 70/30 split of bench_suite.py; the training normals of the 70% (at most
            50,000) plus c of their count taken from the 70%'s anomalies; the detector holds out
            its own 10% for validation (so the validation rows hold about the same share).
  ulb       the ULB credit-card set (`aedetect.data.fetch` finds it), guide protocol
            (`TrainConfig(protocol="guide")`): the guide split keeps 480 of the 492 frauds for
            its test set, so the contaminating frauds are the split's 12 selection-set frauds plus
            a seeded 228 of the test frauds, held out of the test set at every level (the test
            set keeps 252 frauds and all its normals). The 240 frauds go 90/10 into the training
            and validation normals. On the full 227,000 training normals 240 frauds are about
            0.1%; levels beyond what 240 frauds make are skipped ("-"). `--ulb-train-rows N`
            subsamples the training normals (and validation normals to N/9) so that higher
            levels exist.
  payments  generated payment logs with entity history (as bench_history.py: the first
            `--train-days` of `--days` train, with `--entity-columns card_id,terminal_id`, the
            rest is scored, PR-AUC on every later row), at `--fraud-rate` (3% by default, so the
            training period holds enough frauds to contaminate 2%); the training period's frauds
            in the earliest 70% of its rows (the rows the time split trains and validates on) are
            relabelled normal, c of the labelled normals there; the other frauds stay labelled
            and are not trained on.

    python benchmarks/bench_contamination.py --data suite,ulb,payments --seeds 2 --json runs/bench/contamination.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import OUT_DIR, machine  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

LEVELS = (0.0, 0.001, 0.005, 0.01, 0.02)
SETS = ("7_Cardiotocography", "19_landsat", "26_optdigits", "28_pendigits", "41_Waveform")
ULB_POOL = 240  # frauds kept out of the ULB test set to contaminate with


def _n(level: float, n_normals: int) -> int:
    return int(round(level * n_normals))


def each_level(name, seed, levels, fits, n_normals: int, n_pool: int, emit, pr_auc) -> None:
    """`pr_auc(k, params)` for each level (k anomalies added) and fit; a level that needs more
    anomalies than the pool holds is reported as skipped."""
    for level in levels:
        k = _n(level, n_normals)
        for fit, params in fits.items():
            emit(name, seed, level, fit, pr_auc(k, params) if k <= n_pool else None, k)


def suite_runs(sets, seeds, levels, fits, emit, folder: Path | None = None) -> None:
    from bench_suite import DATA, load_sets
    from sklearn.model_selection import train_test_split

    from aedetect.model.detector import AutoencoderDetector

    for name, (X, y) in load_sets(list(sets), folder or DATA).items():
        for seed in seeds:
            tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
            normals = tr[y[tr] == 0]
            if len(normals) > 50_000:
                normals = np.random.default_rng(seed).choice(normals, 50_000, replace=False)
            pool = np.random.default_rng(seed).permutation(tr[y[tr] == 1])

            def pr_auc(k, params, X=X, y=y, te=te, normals=normals, pool=pool, seed=seed):
                det = AutoencoderDetector(seed=seed, **params).fit(X[np.concatenate([normals, pool[:k]])])
                return average_precision_score(y[te], det.anomaly_score(X[te]))

            each_level(f"suite: {name}", seed, levels, fits, len(normals), len(pool), emit, pr_auc)


def ulb_runs(seeds, levels, fits, emit, train_rows: int) -> None:
    from aedetect.data.creditcard import CREDITCARD, LABEL
    from aedetect.data.fetch import fetch_creditcard
    from aedetect.data.io import read_table
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import new_detector, split_frame

    df = read_table(fetch_creditcard())
    y = df[LABEL].to_numpy()
    feats = list(CREDITCARD.features)
    name = "ULB" + (f", {train_rows:,} training normals" if train_rows else "")
    for seed in seeds:
        rng = np.random.default_rng(seed)
        split = split_frame(df, TrainConfig(protocol="guide", seed=seed), CREDITCARD)
        test_frauds = rng.permutation(split.test[y[split.test] == 1])
        held = test_frauds[:ULB_POOL - int((y[split.selection] == 1).sum())]
        pool = rng.permutation(np.concatenate([split.selection[y[split.selection] == 1], held]))
        test = np.setdiff1d(split.test, held)
        train, val = split.train, split.validation
        if train_rows:
            train = np.sort(rng.choice(train, train_rows, replace=False))
            val = np.sort(rng.choice(val, train_rows // 9, replace=False))
        n_normals = len(train) + len(val)

        def pr_auc(k, params, train=train, val=val, test=test, seed=seed, n_normals=n_normals,
                   pool=pool):
            k_val = int(round(k * len(val) / n_normals))  # the added frauds go 90/10 like the normals
            tr = np.concatenate([train, pool[k_val:k]])
            va = np.concatenate([val, pool[:k_val]])
            det = new_detector(TrainConfig(protocol="guide", seed=seed, **params), CREDITCARD)
            det.fit(df.iloc[tr][feats], validation_data=df.iloc[va][feats])
            return average_precision_score(y[test], det.anomaly_score(df.iloc[test][feats]))

        each_level(name, seed, levels, fits, n_normals, len(pool), emit, pr_auc)


def payment_runs(seeds, levels, fits, emit, days, train_days, cards, terminals, fraud_rate) -> None:
    from bench_history import periods

    from aedetect.data.infer import infer_schema
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    name = f"payments ({cards:,} cards, {days} days, {fraud_rate:.0%} frauds)"
    for seed in seeds:
        first, later = periods(seed, days, train_days, cards, terminals, fraud_rate)
        y = later["is_fraud"].to_numpy()
        schema = infer_schema(first).with_overrides(entity_columns=["card_id", "terminal_id"],
                                                    exclude_columns=["fraud_kind", "transaction_id"])
        early = np.arange(len(first)) < round(0.7 * len(first))
        labels = first["is_fraud"].to_numpy()
        n_normals = int(((labels == 0) & early).sum())
        pool = np.random.default_rng(seed).permutation(np.flatnonzero((labels == 1) & early))

        def pr_auc(k, params, first=first, later=later, y=y, schema=schema, pool=pool, seed=seed):
            table = first.copy()
            table.loc[pool[:k], "is_fraud"] = 0
            det = train_detector(table, TrainConfig(seed=seed, **params), schema).detector
            return average_precision_score(y, det.anomaly_score(later))

        each_level(name, seed, levels, fits, n_normals, len(pool), emit, pr_auc)


def pct(level: float) -> str:
    return f"{level * 100:g}%"


def cell(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(rows: list[dict], levels, fits) -> str:
    head = "| data | fit | " + " | ".join(f"c = {pct(c)}" for c in levels) + " |"
    lines = [head, "|---|---|" + "---:|" * len(levels)]
    for data in dict.fromkeys(r["data"] for r in rows):
        for fit in fits:
            cells = [cell([r["pr_auc"] for r in rows if (r["data"], r["fit"], r["level"]) == (data, fit, c)])
                     for c in levels]
            lines.append(f"| {data} | {fit} | " + " | ".join(cells) + " |")
    # The robust fit's gain, set by set and level (mean over seeds), then over the suite's sets.
    gains = ["", "Robust minus plain PR-AUC (mean over seeds; suite: mean over its sets too):", "",
             "| data | fit | " + " | ".join(f"c = {pct(c)}" for c in levels) + " |",
             "|---|---|" + "---:|" * len(levels)]
    plain = list(fits)[0]

    def gain(where, c: float, robust: str) -> float | None:
        out = []
        for seed in dict.fromkeys(r["seed"] for r in rows):
            for data in dict.fromkeys(r["data"] for r in rows if where(r["data"])):
                got = {r["fit"]: r["pr_auc"] for r in rows if r["data"] == data and r["seed"] == seed
                       and r["level"] == c}
                if got.get(plain) is not None and got.get(robust) is not None:
                    out.append(got[robust] - got[plain])
        return statistics.mean(out) if out else None

    groups = {d: (lambda x, d=d: x == d) for d in dict.fromkeys(r["data"] for r in rows)}
    if any(d.startswith("suite") for d in groups):
        groups["suite (all sets)"] = lambda x: x.startswith("suite")
    for d, where in groups.items():
        for robust in list(fits)[1:]:
            vals = []
            for c in levels:
                g = gain(where, c, robust)
                vals.append("-" if g is None else f"{g:+.3f}")
            gains.append(f"| {d} | {robust} | " + " | ".join(vals) + " |")
    return "\n".join(lines + gains)


def write(rows, levels, fits, seeds, out: Path) -> None:
    text = (f"## Unlabelled anomalies in the training rows: PR-AUC, plain vs robust fit\n\n"
            f"Seeds {seeds}; mean ± sd over seeds; c = anomalies added as a share of the training "
            f"normals.\n\n{markdown(rows, levels, fits)}\n\nMachine: {machine()}\n")
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="suite,ulb,payments")
    ap.add_argument("--seeds", type=int, default=2, help="N seeds: F..F+N-1")
    ap.add_argument("--first-seed", type=int, default=0, help="F")
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)))
    ap.add_argument("--robust", default="0.02,0.05", help="the robust fits' trimmed shares")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--suite-dir", type=Path, default=None,
                    help="the ADBench .npz folder (default: bench_suite.py's, benchmarks/data/adbench)")
    ap.add_argument("--ulb-train-rows", type=int, default=0, help="subsample ULB's training normals")
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--train-days", type=int, default=40)
    ap.add_argument("--cards", type=int, default=1000)
    ap.add_argument("--terminals", type=int, default=200)
    ap.add_argument("--fraud-rate", type=float, default=0.03)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=OUT_DIR / "contamination.md")
    ap.add_argument("--tables-from", type=Path, nargs="+", metavar="JSON",
                    help="only write the tables from the --json files of earlier runs, together")
    args = ap.parse_args()
    levels = [float(c) for c in args.levels.split(",")]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    fits = {"plain": {}, **{f"robust={q}": {"robust": float(q)} for q in args.robust.split(",")}}
    rows: list[dict] = []
    if args.tables_from:
        runs = [json.loads(p.read_text()) for p in args.tables_from]
        rows = [r for run in runs for r in run["rows"]]
        levels = sorted({c for run in runs for c in run["levels"]})
        fits = {f: p for run in runs for f, p in run["fits"].items()}
        seeds = sorted({r["seed"] for r in rows})
        write(rows, levels, fits, seeds, args.out)
        return

    def emit(data, seed, level, fit, pr_auc, k):
        rows.append({"data": data, "seed": seed, "level": level, "fit": fit, "anomalies_added": k,
                     "pr_auc": None if pr_auc is None else float(pr_auc)})
        text = "skipped (too few anomalies)" if pr_auc is None else f"PR-AUC {pr_auc:.3f}"
        print(f"{data} seed {seed} c={pct(level)} ({k} added) {fit}: {text} "
              f"[{time.strftime('%H:%M:%S')}]", flush=True)

    for data in args.data.split(","):
        if data == "suite":
            suite_runs([s for s in args.sets.split(",") if s], seeds, levels, fits, emit,
                       args.suite_dir)
        elif data == "ulb":
            ulb_runs(seeds, levels, fits, emit, args.ulb_train_rows)
        elif data == "payments":
            payment_runs(seeds, levels, fits, emit, args.days, args.train_days, args.cards,
                         args.terminals, args.fraud_rate)
        else:
            raise SystemExit(f"unknown data {data!r}: suite, ulb or payments")
    write(rows, levels, fits, seeds, args.out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "levels": levels, "fits": fits},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
