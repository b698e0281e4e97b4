"""The label-aware hybrid beside the supervised-only model and the autoencoder alone, plus the
ablation of the head's feature groups; `bench_quality.py` calls `hybrid_runs` with the
autoencoder it trained, so everything comes from one run on the same splits.

Run alone: .venv/bin/python benchmarks/bench_hybrid.py --protocols time --seeds 2 [--sweep]

Labels: the head learns from the rows outside the selection and test sets (time protocol: the
training period, its frauds included); the selection set (the next window) calibrates it and
chooses thresholds. The guide protocol has no labelled fraud outside its selection and test sets,
so the hybrid falls back to the autoencoder there; its ablation rows ("12 frauds, no
calibration") train the head on every labelled row outside the test set instead, to show what
those 12 frauds give. The test set is used for the reported numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.evaluation.metrics import at_threshold, recall_at_precision  # noqa: E402
from aedetect.model.hybrid import FEATURE_GROUPS, HybridDetector, label_rows, residual_features  # noqa: E402
from aedetect.model.thresholds import min_precision  # noqa: E402
from aedetect.training.config import TrainConfig  # noqa: E402

HYBRID = "hybrid (autoencoder + supervised head)"
SUPERVISED = "supervised only (HGB on raw features, same rows)"
SUPERVISED_ALL = "supervised only (HGB on raw features, every labelled row outside test)"
AUTOENCODER = "autoencoder alone"
ABLATION = {"raw only": ("raw",), "raw + score": ("raw", "score"),
            "raw + contributions": ("raw", "contributions"), "raw + code": ("raw", "code"),
            "all": FEATURE_GROUPS}


def ranking(y, s) -> dict:
    return {"pr_auc": float(average_precision_score(y, s)), "roc_auc": float(roc_auc_score(y, s)),
            "recall_at_precision_0_93": recall_at_precision(y, s, 0.93)}


def _fit_score(hyb: HybridDetector, m: np.ndarray, y: np.ndarray, fit, test) -> np.ndarray:
    with threadpool_limits(1):
        head = hyb.new_head().fit(m[fit], y[fit])
        return head.predict_proba(m[test])[:, 1]


def hybrid_runs(df, det, split, seed: int, *, ablation: bool = True, sweep: bool = False,
                say=print) -> dict[str, dict]:
    """Every system of the hybrid table for one trained autoencoder and its split."""
    feats = list(CREDITCARD.features)
    X, y = df[feats], df[CREDITCARD.label].to_numpy().astype(int)
    fit, cal = label_rows(split, len(df), y)  # the rows `train --use-labels` gives the hybrid
    test = split.test
    out: dict[str, dict] = {}
    start = time.perf_counter()
    m, names = residual_features(det, X, FEATURE_GROUPS)
    cols = {g: [i for i, n in enumerate(names) if _group(n) == g] for g in FEATURE_GROUPS}
    say(f"  features for {len(df):,} rows: {time.perf_counter() - start:.1f} s")
    out[AUTOENCODER] = ranking(y[test], det.anomaly_score(X.iloc[test]))

    start = time.perf_counter()
    hyb = HybridDetector(det, seed=seed).fit(X.iloc[fit], y[fit], X.iloc[cal], y[cal])
    fit_s = time.perf_counter() - start
    p = hyb.anomaly_score(X.iloc[test])
    r = {**ranking(y[test], p), "fit_s": fit_s, "train_anomalies": hyb.n_anomalies_,
         "fallback": hyb.fallback_ is not None}
    if hyb.head_ is not None:
        r["brier"] = float(brier_score_loss(y[test], p))
        r["mean_p_test"], r["fraud_rate_test"] = float(p.mean()), float(y[test].mean())
        if y[cal].any():  # the guide protocol calibrates on validation normals: no threshold by precision
            t = min_precision(hyb.anomaly_score(X.iloc[cal]), y[cal], 0.93)
            at = at_threshold(y[test], p, t)
            r["min_precision_0_93_on_selection"] = {k: at[k] for k in ("precision", "recall", "n_flagged")}
    r["selection"] = hyb.selection_
    out[HYBRID] = r
    say(f"  hybrid: {_line(r)}")

    # Ablation (and the supervised-only model, which is its "raw only" row) on the same rows.
    rows = fit if hyb.head_ is not None else np.setdiff1d(np.arange(len(df)), test)
    tag = "" if hyb.head_ is not None else f" ({int(y[rows].sum())} frauds, no calibration)"
    for name, groups in ABLATION.items():
        if not ablation and name != "raw only":
            continue
        if name == "all" and hyb.head_ is not None and tuple(hyb.features_) == tuple(FEATURE_GROUPS):
            # the same head as the hybrid's, same rows
            out[f"ablation: {name}"] = {k: r[k] for k in ("pr_auc", "roc_auc", "recall_at_precision_0_93")}
            continue
        idx = [c for g in groups for c in cols[g]]
        start = time.perf_counter()
        s = _fit_score(hyb, m[:, idx], y, rows, test)
        out[f"ablation: {name}{tag}"] = {**ranking(y[test], s), "fit_s": time.perf_counter() - start}
        say(f"  ablation {name}{tag}: {_line(out[f'ablation: {name}{tag}'])}")
    out[SUPERVISED] = out[f"ablation: raw only{tag}"]
    if ablation and hyb.head_ is not None:  # compare's ceiling: also the selection window's frauds
        outside = np.setdiff1d(np.arange(len(df)), test)
        out[SUPERVISED_ALL] = ranking(y[test], _fit_score(hyb, m[:, cols["raw"]], y, outside, test))
        say(f"  supervised, all labelled rows outside test: {_line(out[SUPERVISED_ALL])}")
    if sweep and hyb.head_ is not None:
        # How many labelled frauds the head needs: keep k of the training frauds (seeded).
        rng = np.random.default_rng(seed)
        frauds, normals = fit[y[fit] == 1], fit[y[fit] == 0]
        for k in (5, 10, 20, 50, 100):
            keep = np.sort(np.concatenate([normals, rng.choice(frauds, min(k, len(frauds)), replace=False)]))
            out[f"sweep: {k} training frauds"] = ranking(y[test], _fit_score(hyb, m, y, keep, test))
            say(f"  sweep {k} frauds: {_line(out[f'sweep: {k} training frauds'])}")
    return out


def _group(name: str) -> str:
    if name == "ae_score":
        return "score"
    if name.startswith("ae_contribution_"):
        return "contributions"
    if name.startswith("ae_code_"):
        return "code"
    return "raw"


def _line(r: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in r.items() if isinstance(v, float))


def _cell(runs: list[dict], key: str, digits: int = 3) -> str:
    v = np.array([r[key] for r in runs if key in r])
    if not len(v):
        return "-"
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f} [{v.min():.{digits}f}-{v.max():.{digits}f}]"


def hybrid_tables(results: dict[str, list[dict]], title: str) -> str:
    """The side-by-side table (hybrid, supervised only, autoencoder alone) and the ablation."""
    main = [AUTOENCODER, SUPERVISED, SUPERVISED_ALL, HYBRID]  # guide: SUPERVISED is the 12-fraud head
    head = ["system", "seeds", "PR-AUC", "ROC-AUC", "recall@P0.93"]
    lines = [f"### Label-aware hybrid: {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in main:
        if name in results:
            runs = results[name]
            lines.append(f"| {name} | {len(runs)} | " + " | ".join(
                _cell(runs, k) for k in ("pr_auc", "roc_auc", "recall_at_precision_0_93")) + " |")
    hyb = results.get(HYBRID, [])
    notes = [f"hybrid head trained on {sorted({r['train_anomalies'] for r in hyb})} labelled frauds"]
    chosen = [r["selection"]["chosen"] for r in hyb if r.get("selection")]
    if chosen:
        notes.append(f"features chosen on the calibration rows: raw only in {chosen.count('raw')}, raw + "
                     f"residuals in {chosen.count('all')} of {len(chosen)} runs")
    if any(r.get("fallback") for r in hyb):
        notes.append(f"fell back to the autoencoder in {sum(bool(r.get('fallback')) for r in hyb)} of {len(hyb)} runs")
    sel = [r["min_precision_0_93_on_selection"] for r in hyb if "min_precision_0_93_on_selection" in r]
    if sel:
        notes.append("at the min_precision 0.93 threshold chosen on the selection window, test precision "
                     f"{_cell(sel, 'precision')}, recall {_cell(sel, 'recall')}")
    if hyb and "brier" in hyb[0]:
        notes.append(f"Brier score of the probability on the test set {_cell(hyb, 'brier', 5)}; mean probability "
                     f"{_cell(hyb, 'mean_p_test', 5)} against a fraud rate of {_cell(hyb, 'fraud_rate_test', 5)}")
    lines += ["", "; ".join(notes) + ".", "", "Ablation (the head's feature groups; same rows, same head):", "",
              "| features | seeds | PR-AUC | recall@P0.93 |", "|---|---|---|---|"]
    for name, runs in results.items():
        if name.startswith("ablation: ") or name.startswith("sweep: "):
            lines.append(f"| {name.split(': ', 1)[1]} | {len(runs)} | {_cell(runs, 'pr_auc')} | "
                         f"{_cell(runs, 'recall_at_precision_0_93')} |")
    return "\n".join(lines)


CACHE = Path(os.environ.get("AEDETECT_BENCH_OUT", "runs/bench")) / "hybrid-cache"


def trained_autoencoder(df, protocol: str, seed: int):
    """The defaults' autoencoder for a protocol and seed, trained once and kept in a model folder
    (so a run that stops can go on where it stopped), and its split."""
    from aedetect.model.detector import load_detector
    from aedetect.training.workflow import split_frame, train_detector

    config = TrainConfig(protocol=protocol, seed=seed)
    path = CACHE / f"{protocol}-{seed}"
    if path.exists():
        return load_detector(path), split_frame(df, config, CREDITCARD)
    result = train_detector(df, config, CREDITCARD)
    result.detector.save(path)
    return result.detector, result.split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--protocols", nargs="+", default=["time"])
    ap.add_argument("--ablation-seeds", type=int, default=None, help="ablation on the first N seeds (all)")
    ap.add_argument("--sweep", action="store_true", help="also train heads on 5-100 of the frauds")
    ap.add_argument("--out", default="runs/bench/hybrid.md")
    ap.add_argument("--summarise", action="store_true", help="only print the tables of the runs in OUT.jsonl")
    args = ap.parse_args()
    log = Path(args.out).with_suffix(".jsonl")
    if args.summarise:
        done: dict[str, dict[str, list[dict]]] = {}
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            for k, v in rec["runs"].items():
                done.setdefault(rec["protocol"], {}).setdefault(k, []).append(v)
        print("\n\n".join(hybrid_tables(r, f"creditcard.csv, {p} protocol") for p, r in done.items()))
        return
    from bench_quality import load

    df, name = load("creditcard")
    log.parent.mkdir(parents=True, exist_ok=True)
    sections, raw = [], {}
    for protocol in args.protocols:
        results: dict[str, list[dict]] = {}
        for seed in range(args.seeds):
            print(f"{protocol} seed {seed}: autoencoder", flush=True)
            det, split = trained_autoencoder(df, protocol, seed)
            ablation = args.ablation_seeds is None or seed < args.ablation_seeds
            runs = hybrid_runs(df, det, split, seed, ablation=ablation, sweep=args.sweep)
            with log.open("a") as f:
                f.write(json.dumps({"protocol": protocol, "seed": seed, "runs": runs}, default=float) + "\n")
            for k, v in runs.items():
                results.setdefault(k, []).append(v)
        sections.append(hybrid_tables(results, f"{name}, {protocol} protocol, {args.seeds} seeds"))
        raw[protocol] = results
    text = "\n\n".join(sections)
    print("\n" + text)
    Path(args.out).write_text(text + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(raw, indent=1, default=float))


if __name__ == "__main__":
    main()
