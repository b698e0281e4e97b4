"""Detection quality over seeds: aedetect's defaults beside the guide's recipe and a plain
Mahalanobis distance, trained in the same run on the same splits; then the label-aware hybrid
beside the supervised-only model and the autoencoder alone, with its ablation (bench_hybrid.py).

Run: .venv/bin/python benchmarks/bench_quality.py --seeds 5 --protocols guide time
     .venv/bin/python benchmarks/bench_quality.py --data generated --seeds 3

Labels: training and every score statistic see normal rows only. The threshold in the F1 columns
is label-free: the 99.9th percentile of each system's scores on the validation normals. The test
set is used for the reported numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from bench_hybrid import hybrid_runs, hybrid_tables  # noqa: E402
from sklearn.covariance import EmpiricalCovariance  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from aedetect.data.creditcard import CREDITCARD, LABEL, TIME  # noqa: E402
from aedetect.data.generate import generate_transactions  # noqa: E402
from aedetect.data.schema import DatasetSchema  # noqa: E402
from aedetect.evaluation.metrics import evaluate_scores  # noqa: E402
from aedetect.model.thresholds import normal_percentile  # noqa: E402
from aedetect.training.config import PRESETS, TrainConfig  # noqa: E402
from aedetect.training.workflow import split_frame, train_detector  # noqa: E402

# The guide's network on standardised raw columns: no log amount, no hour of day.
RAW = DatasetSchema.of_numbers(CREDITCARD.features, label=LABEL, time=TIME)
GUIDE = TrainConfig(**PRESETS["guide"])
KEYS = ("roc_auc", "pr_auc", "recall_at_precision_0_93", "precision_at_recall_0_433",
        "f1", "precision", "recall", "fit_s")


def _label_free(y, scores, val_scores) -> dict:
    t = normal_percentile(val_scores, 99.9)
    m = evaluate_scores(y, scores, t)
    return {k: m[k] for k in KEYS if k in m}


def mahalanobis(df, split) -> dict:
    feats = list(CREDITCARD.features)
    start = time.perf_counter()
    scaler = StandardScaler().fit(df.iloc[split.train][feats])
    cov = EmpiricalCovariance().fit(scaler.transform(df.iloc[split.train][feats]))
    fit_s = time.perf_counter() - start
    score = lambda rows: cov.mahalanobis(scaler.transform(df.iloc[rows][feats]))  # noqa: E731
    out = _label_free(df.iloc[split.test]["Class"].to_numpy(), score(split.test),
                      score(split.validation))
    return {**out, "fit_s": fit_s}


def autoencoder(df, config: TrainConfig, schema: DatasetSchema, trained: list | None = None) -> dict:
    start = time.perf_counter()
    result = train_detector(df, config, schema)
    fit_s = time.perf_counter() - start
    det, split = result.detector, result.split
    feats = list(schema.features)
    test = df.iloc[split.test]
    scores = det.anomaly_score(test[feats])
    val = det.anomaly_score(df.iloc[split.validation][feats])
    out = _label_free(test["Class"].to_numpy(), scores, val)
    if trained is not None:
        trained.append(result)
    return {**out, "fit_s": fit_s, "epochs": det.n_epochs_}


def load(data: str):
    if data == "generated":
        return generate_transactions(200_000, fraud_rate=0.002, seed=0), "generated (200k rows, 0.2%)"
    from aedetect.data.fetch import fetch_creditcard
    from aedetect.data.io import read_table

    path = fetch_creditcard() if data == "creditcard" else Path(data)
    return read_table(path), str(path.name)


def summarise(rows: list[dict]) -> dict:
    out = {}
    for k in KEYS:
        v = np.array([r[k] for r in rows if k in r])
        if len(v):
            out[k] = (v.mean(), v.std(), v.min(), v.max())
    return out


def table(results: dict, title: str) -> str:
    head = ["system", "ROC-AUC", "PR-AUC", "recall@P0.93", "precision@R0.433",
            "F1 (label-free t)", "P / R at that t", "fit s"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def cell(s: dict, k: str) -> str:
        return f"{s[k][0]:.3f} ± {s[k][1]:.3f} [{s[k][2]:.3f}-{s[k][3]:.3f}]"

    for name, rows in results.items():
        s = summarise(rows)
        lines.append(f"| {name} | {cell(s, 'roc_auc')} | {cell(s, 'pr_auc')} | "
                     f"{cell(s, 'recall_at_precision_0_93')} | {cell(s, 'precision_at_recall_0_433')} | "
                     f"{cell(s, 'f1')} | {s['precision'][0]:.3f} / {s['recall'][0]:.3f} | "
                     f"{s['fit_s'][0]:.0f} |")
    lines.append("")
    lines.append("mean ± std [min-max] over seeds; test set only; F1 at the 99.9th percentile of "
                 "validation-normal scores (no labels).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="creditcard", help="'creditcard', 'generated' or a file")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--protocols", nargs="+", default=["guide", "time"])
    ap.add_argument("--out", default="runs/bench/quality.md")
    ap.add_argument("--no-labels", action="store_true", help="skip the label-aware hybrid (bench_hybrid.py)")
    args = ap.parse_args()
    df, name = load(args.data)
    sections, raw = [], {}
    for protocol in args.protocols:
        results: dict[str, list[dict]] = {"aedetect (defaults)": [], "guide recipe (20-8-20 tanh, "
                                          "MSE, 5 epochs)": [], "Mahalanobis on inputs": []}
        labelled: dict[str, list[dict]] = {}
        for seed in range(args.seeds):
            default = TrainConfig(protocol=protocol, seed=seed)
            guide = GUIDE.model_copy(update={"protocol": protocol, "seed": seed})
            split = split_frame(df, default, CREDITCARD)
            trained: list = []
            runs = [autoencoder(df, default, CREDITCARD, trained), autoencoder(df, guide, RAW),
                    mahalanobis(df, split)]
            for key, r in zip(results, runs, strict=True):
                results[key].append(r)
                print(f"{protocol} seed {seed} {key}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in r.items()), flush=True)
            if not args.no_labels:  # the label-aware hybrid on the same autoencoder and split
                print(f"{protocol} seed {seed} label-aware hybrid:", flush=True)
                for key, r in hybrid_runs(df, trained[0].detector, trained[0].split, seed).items():
                    labelled.setdefault(key, []).append(r)
        sections.append(table(results, f"{name}, {protocol} protocol, {args.seeds} seeds"))
        if labelled:
            sections.append(hybrid_tables(labelled, f"{name}, {protocol} protocol, {args.seeds} seeds"))
        raw[protocol] = {**results, **labelled}
    text = "\n\n".join(sections)
    print("\n" + text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(raw, indent=1, default=float))


if __name__ == "__main__":
    main()
