"""The label curve: what catches the most fraud with the 10, 25, 100... labelled frauds a team has.

ULB time protocol: the autoencoder (the defaults, trained on the training period's normals) is
scored on the later test period beside the supervised model alone (gradient boosting on the raw
columns), the mean of those two scores' ranks (a reference: it ranks the test rows together, so
no single row can be scored so), and the label-aware mode (`HybridDetector` as `train
--use-labels` builds it: its own choice of features on time-ordered folds, the head blended
with the autoencoder, calibrated on the selection window), both trained on the training
period's normals and only N of its labelled frauds (drawn with the seed). PR-AUC and recall at
precision 0.93 on the test period, mean over seeds; the test period chooses nothing.

    python benchmarks/bench_label_curve.py --labels 0,3,5,10,25,50,100,200,all --seeds 5
    python benchmarks/bench_label_curve.py --labels 25 --seeds 5 --json point.json   # one point:
        # {"labels": 25, "seeds": 5, "ae": x, "supervised": y, "hybrid": z} (mean PR-AUC), and the
        # recall at precision 0.93 and every seed's figures beside them
    python benchmarks/bench_label_curve.py --protocol guide --seeds 5   # the guide protocol's
        # one point: its 12 labelled frauds outside the test set, as `train --use-labels` uses them
    python benchmarks/bench_label_curve.py --data payments --labels 0,3,10,25,50,100,all --seeds 3
        # generated payment logs with entity history (bench_history.PaymentModel): the labels of
        # the first 40 days, the last 20 days tested

The autoencoders are trained once per seed and kept (bench_hybrid.py's cache,
runs/bench/hybrid-cache), so the points of a curve share them.
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
from bench_hybrid import _fit_score, ranking, trained_autoencoder  # noqa: E402
from common import real_data, report, table  # noqa: E402
from scipy.stats import rankdata  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.model.hybrid import HybridDetector, fit_hybrid, label_rows, residual_features  # noqa: E402

SYSTEMS = ("ae", "supervised", "hybrid", "rank_mean")


def compared(y_test, ae_scores, sup_scores, hybrid_scores) -> dict:
    """Each system's ranking of the test rows (supervised and rank mean: None with no label)."""
    has = sup_scores is not None
    return {"ae": ranking(y_test, ae_scores), "supervised": ranking(y_test, sup_scores) if has else None,
            "hybrid": ranking(y_test, hybrid_scores),
            # a combination known to hold with few labels: the mean of the two scores' ranks among
            # the scored rows (a reference: no single row can be scored so)
            "rank_mean": ranking(y_test, rankdata(ae_scores) + rankdata(sup_scores)) if has else None}


def one_seed(df, seed: int, counts: list[int | None], say=print) -> dict[int | None, dict]:
    """Every system at every label count for one seed's ULB autoencoder and time split."""
    det, split = trained_autoencoder(df, "time", seed)
    X, y = df[list(CREDITCARD.features)], df[CREDITCARD.label].to_numpy().astype(int)
    fit, cal = label_rows(split, len(df))
    return curve(det, X, y, fit, cal, split.test, seed, counts, say)


def payments_seed(seed: int, counts: list[int | None], say=print) -> dict[int | None, dict]:
    """The same on a generated payment log with entity history (`bench_history.PaymentModel`):
    the labelled rows are the first 40 days' (as `train --use-labels` takes them from its split
    of that period), the test rows the last 20 days."""
    from bench_history import PaymentModel

    pm = PaymentModel(seed)
    fit, cal = label_rows(pm.split, pm.n_first)
    return curve(pm.det, pm.X, pm.y, fit, cal, pm.later, seed, counts, say)


def curve(det, X, y, fit, cal, test, seed: int, counts: list[int | None], say=print) -> dict[int | None, dict]:
    """The systems at every count of labelled frauds: the head learns from the normals of `fit`
    and the first N of a seeded draw of its frauds (so the points are nested), calibrates on
    `cal`; all are judged on `test`."""
    raw = residual_features(det, X, ("raw",))[0]
    ae_scores = det.anomaly_score(X.iloc[test])
    frauds, normals = fit[y[fit] == 1], fit[y[fit] == 0]
    order = np.random.default_rng(seed).permutation(frauds)
    out = {}
    for n in counts:
        keep = np.sort(np.concatenate([normals, order[:len(frauds) if n is None else n]]))
        start = time.perf_counter()
        hyb = HybridDetector(det, seed=seed).fit(X.iloc[keep], y[keep], X.iloc[cal], y[cal])
        sup_scores = _fit_score(hyb, raw, y, keep, test) if y[keep].sum() else None
        out[n] = {**compared(y[test], ae_scores, sup_scores, hyb.anomaly_score(X.iloc[test])),
                  "frauds": int(y[keep].sum()), "seconds": time.perf_counter() - start}
        out[n]["hybrid"]["chose"] = "autoencoder (fallback)" if hyb.fallback_ else hyb.selection_["chosen"]
        say(f"  seed {seed}, {out[n]['frauds']} labelled frauds: " + _line(out[n]))
    return out


def guide_seed(df, seed: int, say=print) -> dict:
    """The guide protocol's point: the 12 labelled frauds outside the test set (all in its
    selection set), through `fit_hybrid` as `train --use-labels` runs it."""
    det, split = trained_autoencoder(df, "guide", seed)
    X, y = df[list(CREDITCARD.features)], df[CREDITCARD.label].to_numpy().astype(int)
    test = split.test
    fit, _ = label_rows(split, len(df), y)
    hyb = fit_hybrid(det, df, split, CREDITCARD, seed=seed)
    sup_scores = _fit_score(hyb, residual_features(det, X, ("raw",))[0], y, fit, test)
    out = {**compared(y[test], det.anomaly_score(X.iloc[test]), sup_scores, hyb.anomaly_score(X.iloc[test])),
           "frauds": int(y[fit].sum())}
    say(f"  guide seed {seed}, {out['frauds']} labelled frauds: " + _line(out))
    return {"guide": out}


def _line(point: dict) -> str:
    return ", ".join(f"{name} {'-' if point[name] is None else format(point[name]['pr_auc'], '.3f')}"
                     for name in SYSTEMS) + " (PR-AUC)"


def mean(runs: list[dict], system: str, key: str) -> float | None:
    values = [r[system][key] for r in runs if r[system] is not None]
    return float(statistics.mean(values)) if values else None


def sem(runs: list[dict], system: str, key: str) -> float | None:
    values = [r[system][key] for r in runs if r[system] is not None]
    return float(statistics.stdev(values) / len(values) ** 0.5) if len(values) > 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("time", "guide"), default="time")
    ap.add_argument("--data", choices=("ulb", "payments"), default="ulb",
                    help="ULB, or generated payment logs with entity history (the time protocol's counts)")
    ap.add_argument("--labels", default="0,3,5,10,25,50,100,200,all",
                    help="comma-separated counts of labelled frauds in the training period ('all': every one)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="write the means (and each seed) of a single --labels")
    args = ap.parse_args()
    counts = [None if c.strip() == "all" else int(c) for c in args.labels.split(",")]
    if args.protocol == "guide":
        counts = ["guide"]
    if args.json is not None and len(counts) != 1:
        raise SystemExit("--json writes one point: give one --labels value")
    payments = args.data == "payments"
    if payments and args.protocol == "guide":
        raise SystemExit("--data payments has the time protocol only")
    if payments:
        per_seed = [payments_seed(seed, counts) for seed in range(args.seeds)]
    else:
        df, _ = real_data()
        per_seed = [guide_seed(df, seed) if args.protocol == "guide" else one_seed(df, seed, counts)
                    for seed in range(args.seeds)]
    rows, points = [], {}
    for n in counts:
        runs = [s[n] for s in per_seed]
        point = {"labels": "all" if n is None else n, "seeds": args.seeds,
                 "frauds": statistics.mean(r["frauds"] for r in runs)}
        for system in SYSTEMS:
            point[system] = mean(runs, system, "pr_auc")
            point[f"{system}_sem"] = sem(runs, system, "pr_auc")
            point[f"{system}_recall_at_precision_0_93"] = mean(runs, system, "recall_at_precision_0_93")
        point["runs"] = runs
        points[n] = point
        best_part = max(v for v in (point["ae"], point["supervised"]) if v is not None)
        rows.append([point["labels"], point["frauds"], *(
            "-" if point[s] is None else f"{point[s]:.3f} ± {point[f'{s}_sem'] or 0:.3f}" for s in SYSTEMS),
            f"{point['hybrid'] - best_part:+.3f}",
            *("-" if point[f"{s}_recall_at_precision_0_93"] is None else
              f"{point[f'{s}_recall_at_precision_0_93']:.3f}" for s in SYSTEMS)])
    load = os.getloadavg()[0]
    what = ("generated payment logs with entity history (last 20 days tested)" if payments
            else f"ULB {args.protocol} protocol")
    body = (f"{what}, {args.seeds} seeds (0-{args.seeds - 1}); PR-AUC on the test period, mean ± "
            f"standard error; load average at the end {load:.2f}\n\n"
            + table(["labelled frauds", "frauds kept (mean)", "autoencoder", "supervised", "label-aware",
                     "rank mean (ae, supervised)", "label-aware - best part", "recall@P0.93 ae", "supervised",
                     "label-aware", "rank mean"], rows))
    print(body)
    name = "label_curve_payments" if payments else "label_curve" if args.protocol == "time" else "label_curve_guide"
    report(name, f"The label curve ({what})", body)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(points[counts[0]], indent=2, default=str))


if __name__ == "__main__":
    main()
