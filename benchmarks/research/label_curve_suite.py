"""The label-aware blend on public sets it was not tuned on (issue 22 research).

For each ADBench set and seed: a stratified 50/50 split; the autoencoder (the defaults) on the
first half's normals (at most 20,000); N of the first half's anomalies labelled (seeded), beside
its normals; then on the second half, PR-AUC of the autoencoder, the supervised head alone (the
hybrid's model on the preprocessed features) and the label-aware mode (`HybridDetector`, no
calibration rows: the ranking is the blend's). The blend's prior (25 labelled anomalies) was
chosen on the ULB label curve; these sets never saw it.

    PYTHONPATH=src python benchmarks/research/label_curve_suite.py --suite-dir DIR --seeds 3
    ... --head '{"max_iter": 500, "learning_rate": 0.02}'   # other head settings, beside the defaults
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from bench_suite import load_sets  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from aedetect.model.detector import AutoencoderDetector  # noqa: E402
from aedetect.model.hybrid import HybridDetector  # noqa: E402

SETS = ["7_Cardiotocography", "12_fault", "19_landsat", "22_magic.gamma", "28_pendigits", "30_satellite",
        "35_SpamBase", "47_yeast"]

ap = argparse.ArgumentParser()
ap.add_argument("--suite-dir", type=Path, required=True)
ap.add_argument("--seeds", type=int, default=3)
ap.add_argument("--labels", default="5,25,100")
ap.add_argument("--head", default=None, help="JSON of HybridDetector head settings, run beside the defaults")
args = ap.parse_args()
counts = [int(c) for c in args.labels.split(",")]
heads = {"defaults": {}, **({"given": json.loads(args.head)} if args.head else {})}
res: dict = {}
for name, (X, y) in load_sets(SETS, args.suite_dir).items():
    for seed in range(args.seeds):
        tr, te = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=seed)
        rng = np.random.default_rng(seed)
        normals = tr[y[tr] == 0]
        ae_rows = rng.choice(normals, min(len(normals), 20_000), replace=False)
        det = AutoencoderDetector(seed=seed).fit(X[ae_rows])
        ae = average_precision_score(y[te], det.anomaly_score(X[te]))
        anomalies = rng.permutation(tr[y[tr] == 1])
        for n in counts:
            if n > len(anomalies):
                continue
            rows = rng.permutation(np.concatenate([normals, anomalies[:n]]))
            for key, params in heads.items():
                hyb = HybridDetector(det, seed=seed, **params).fit(X[rows], y[rows])
                with threadpool_limits(1):
                    head = hyb.new_head().fit(det.preprocess(X[rows]), y[rows])
                    sup = average_precision_score(y[te], head.decision_function(det.preprocess(X[te])))
                blend = average_precision_score(y[te], hyb.anomaly_score(X[te]))
                res.setdefault((key, n), []).append((name, seed, ae, sup, blend))
                print(f"{name} seed {seed} n={n} head {key}: ae {ae:.3f} supervised {sup:.3f} label-aware "
                      f"{blend:.3f} ({hyb.selection_['chosen']})", flush=True)
print(f"\nload average {os.getloadavg()[0]:.2f}")
print("| head | labelled anomalies | runs | autoencoder | supervised | label-aware | label-aware - best part | "
      "runs where label-aware < best part - 0.02 |")
print("|---|---|---|---|---|---|---|---|")
for (key, n), rows in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    a = np.array([r[2:] for r in rows])
    best = a[:, :2].max(1)
    print(f"| {key} | {n} | {len(a)} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {a[:, 2].mean():.3f} | "
          f"{(a[:, 2] - best).mean():+.3f} | {int((a[:, 2] < best - 0.02).sum())} |")
