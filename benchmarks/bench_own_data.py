"""PR-AUC per planted fraud kind on the generated transactions table: the autoencoder beside
IsolationForest on the same preprocessed (one-hot) features, over several seeds.

Each seed generates a table (`aedetect data generate --kind transactions`), infers its schema
as `aedetect train` does, splits it by the guide protocol and trains on the training normals.
PR-AUC of a kind is computed on the test normals plus the test rows of that kind, so each
column says how well that kind alone is found among normal traffic.

    python benchmarks/bench_own_data.py --rows 30000 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import OUT_DIR, machine


def run(rows: int, fraud_rate: float, seeds: list[int], epochs: int) -> tuple[dict, list[str]]:
    import numpy as np
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score

    from aedetect.data.generate import FRAUD_KINDS, generate_transaction_log
    from aedetect.data.infer import infer_schema
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    kinds = ["all", *FRAUD_KINDS]
    results: dict = {m: {k: [] for k in kinds} for m in ("autoencoder", "IsolationForest")}
    notes = []
    for seed in seeds:
        df = generate_transaction_log(rows, fraud_rate, seed)
        schema = infer_schema(df)
        start = time.perf_counter()
        res = train_detector(df, TrainConfig(seed=seed, epochs=epochs), schema)
        det, split = res.detector, res.split
        t_ae = time.perf_counter() - start
        features = schema.features
        test = df.iloc[split.test]
        y = test["is_fraud"].to_numpy()
        kind = test["fraud_kind"].to_numpy()
        pre = det.preprocessor_
        start = time.perf_counter()
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(
            pre.transform(df.iloc[split.train][features]))
        t_if = time.perf_counter() - start
        scores = {"autoencoder": det.anomaly_score(test[features]),
                  "IsolationForest": -forest.score_samples(pre.transform(test[features]))}
        for method, s in scores.items():
            for k in kinds:
                rows_k = (y == 0) | (kind == k) if k != "all" else np.ones(len(y), bool)
                results[method][k].append(average_precision_score(y[rows_k], s[rows_k]))
        notes.append(f"seed {seed}: {len(df):,} rows, {pre.n_features_out} features after "
                     f"preprocessing, test {len(test):,} rows ({int(y.sum())} frauds); autoencoder "
                     f"{det.n_epochs_} epochs in {t_ae:.0f} s, IsolationForest {t_if:.0f} s")
        print(notes[-1], flush=True)
    return results, notes


def table(results: dict, kinds: list[str]) -> str:
    def cell(v):
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    lines = ["| fraud kind | autoencoder PR-AUC | IsolationForest PR-AUC |", "| --- | ---: | ---: |"]
    for k in kinds:
        lines.append(f"| {k} | {cell(results['autoencoder'][k])} | {cell(results['IsolationForest'][k])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--fraud-rate", type=float, default=0.02)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30, help="at most (early stopping)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "own-data.md")
    args = ap.parse_args()
    from aedetect.data.generate import FRAUD_KINDS

    results, notes = run(args.rows, args.fraud_rate, list(range(args.seeds)), args.epochs)
    text = (f"PR-AUC on the test set (guide protocol), mean ± sd over {args.seeds} seeds; "
            f"{args.rows:,} generated rows, {args.fraud_rate:.0%} frauds, at most {args.epochs} epochs.\n\n"
            + table(results, ["all", *FRAUD_KINDS]) + "\n\n" + "\n".join(f"- {n}" for n in notes)
            + f"\n- machine: {machine()}\n")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
