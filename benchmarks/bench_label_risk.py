"""Label-based risk (each card's and terminal's fraud rate over windows that end a label delay
before the payment) in the label-aware mode, on generated payment logs.

For each seed, the log of `bench_history.py` (`generate_payment_log(n_days=60, seed=S)`: 2,000
cards, 400 terminals, 0.5% frauds of four kinds); the first 40 days train, as `aedetect train
--entity-columns card_id,terminal_id --use-labels` does, the last 20 days are scored as `aedetect
score` scores a file that holds its known labels: a row's fraud rates read the labels of the rows
at least the delay before it (the training period's and the scored period's own), never its own
or a later one. Systems, each trained on the same split with the same seed:

  without risk      --use-labels --set label_delay_days=null (the history features alone)
  delay 7d          --use-labels (the default: labels known 7 days after the payment)
  delay 1d          --use-labels --set label_delay_days=1

For each, the label-aware model's score (`hybrid`) and its autoencoder's alone (`ae`: trained on
the normals with the same features). PR-AUC over the later period, and per fraud kind (the kind
against the normals).

    python benchmarks/bench_label_risk.py --seeds 3 [--json runs/bench/label_risk.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench_history import ENTITIES, EXCLUDE, cell, periods
from common import machine

SYSTEMS = {"without risk": None, "delay 7d": 7.0, "delay 1d": 1.0}


def one_seed(seed: int) -> dict:
    from sklearn.metrics import average_precision_score

    from aedetect.data.generate import PAYMENT_KINDS
    from aedetect.data.infer import infer_schema
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    first, later = periods(seed, 60, 40, 2000, 400, 0.005)
    y = later["is_fraud"].to_numpy().astype(int)
    kind = later["fraud_kind"].fillna("").to_numpy(dtype=object)
    schema = infer_schema(first).with_overrides(entity_columns=ENTITIES, exclude_columns=EXCLUDE)
    out = {"seed": seed, "later_frauds": int(y.sum()), "pr_auc": {}, "seconds": {}}
    for name, delay in SYSTEMS.items():
        start = time.perf_counter()
        det = train_detector(first, TrainConfig(seed=seed, use_labels=True, label_delay_days=delay), schema).detector
        out["seconds"][name] = time.perf_counter() - start
        for part, model in (("hybrid", det), ("ae", det.detector)):
            s = model.anomaly_score(later)  # the later rows' labels count from `delay` after each
            per = {"all": float(average_precision_score(y, s))}
            for k in PAYMENT_KINDS:
                rows = kind == k
                sub = (y == 0) | rows
                per[k] = float(average_precision_score(rows[sub], s[sub]))
            out["pr_auc"][f"{name}, {part}"] = per
        print(f"  seed {seed}, {name}: hybrid {out['pr_auc'][f'{name}, hybrid']['all']:.3f}, "
              f"ae {out['pr_auc'][f'{name}, ae']['all']:.3f} ({out['seconds'][name]:.0f} s)", flush=True)
    return out


def main() -> None:
    from aedetect.data.generate import PAYMENT_KINDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(machine())
    runs = [one_seed(s) for s in range(args.seeds)]
    rows = list(runs[0]["pr_auc"])
    kinds = ["all", *PAYMENT_KINDS]
    print(f"\nPR-AUC on the later 20 days, mean ± sd over {len(runs)} seed(s):\n")
    print("| system | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for r in rows:
        print(f"| {r} | " + " | ".join(cell([run["pr_auc"][r][k] for run in runs]) for k in kinds) + " |")
    print("\nseconds to train, mean: " + ", ".join(
        f"{n} {statistics.mean(run['seconds'][n] for run in runs):.0f}" for n in SYSTEMS))
    print(machine())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
