"""How far can a score on the history features go on `make bench-history`'s logs (issue 20
research)? The bar asks the autoencoder for IsolationForest + 0.10 PR-AUC on the later period.

Two references per seed, on the same logs, features and periods as `bench_history.py` (the first
40 days train, the last 20 are scored; every row's history from one pass, strictly from the past):

  supervised   scikit-learn's HistGradientBoostingClassifier (seeded, default settings) fitted
               on every labelled row of the first 40 days, the frauds included: what the
               features give with all the labels an unsupervised detector never sees
  ceiling      a score that ranks every fraud on top except the compromised terminals', which
               it ranks among the normals at random: the best any score can do when the
               features do not show those frauds (no feature of a row without labels does:
               every method's PR-AUC on them is 0.003-0.03, docs/history.md)

    python benchmarks/research/history_ceiling.py --seeds 3
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: bench_history

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench_history import ENTITIES, EXCLUDE, forest_matrix, periods  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from aedetect.data.generate import PAYMENT_KINDS  # noqa: E402
from aedetect.data.history import add_history  # noqa: E402
from aedetect.data.infer import infer_schema  # noqa: E402


def one_seed(seed: int) -> dict:
    first, later = periods(seed, 60, 40, 2000, 400, 0.005)
    schema = infer_schema(first).with_overrides(entity_columns=ENTITIES, exclude_columns=EXCLUDE)
    log = pd.concat([first, later], ignore_index=True)
    x = forest_matrix(add_history(log, schema)[0], schema)
    y = log["is_fraud"].to_numpy().astype(int)
    kind = log["fraud_kind"].fillna("").to_numpy(dtype=object)
    n = len(first)
    model = HistGradientBoostingClassifier(random_state=seed).fit(x[:n], y[:n])
    s, y, kind = model.predict_proba(x[n:])[:, 1], y[n:], kind[n:]
    seen = (y == 1) & (kind != "compromised_terminal")
    ceiling = np.where(seen, 2.0, np.random.default_rng(seed).random(len(y)))
    per_kind = {k: float(average_precision_score((kind == k)[(y == 0) | (kind == k)], s[(y == 0) | (kind == k)]))
                for k in PAYMENT_KINDS if (kind == k).any()}
    return {"seed": seed, "supervised": float(average_precision_score(y, s)),
            "ceiling": float(average_precision_score(y, ceiling)), "supervised_per_kind": per_kind}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    runs = [one_seed(seed) for seed in range(ap.parse_args().seeds)]
    for r in runs:
        kinds = ", ".join(f"{k} {v:.3f}" for k, v in r["supervised_per_kind"].items())
        print(f"seed {r['seed']}: supervised PR-AUC {r['supervised']:.3f} ({kinds}); "
              f"ceiling without the terminals' frauds {r['ceiling']:.3f}")
    for key in ("supervised", "ceiling"):
        values = [r[key] for r in runs]
        print(f"{key}: mean {np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}")


if __name__ == "__main__":
    main()
