"""Issue 22 research: the autoencoder's score as a monotone feature of the head (scikit-learn's
monotonic_cst), beside the head on raw features alone and the prior blend. ULB time protocol,
the label curve's cached autoencoders and label draws; PR-AUC on the test period.

  cd benchmarks && python research/label_mono.py --seeds 0,1,2,3,4 --labels 25,50,100,all
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402
from bench_hybrid import trained_autoencoder  # noqa: E402
from common import real_data  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.model.hybrid import label_rows, residual_features  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--seeds", default="0,1,2,3,4")
ap.add_argument("--labels", default="25,50,100,all")
ap.add_argument("--out", default="/tmp/label_mono.jsonl")
args = ap.parse_args()
df = real_data()[0]
X, y = df[list(CREDITCARD.features)], df[CREDITCARD.label].to_numpy().astype(int)


def head(mono=None):
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, l2_regularization=1.0,
                                          min_samples_leaf=20, early_stopping=False, random_state=0,
                                          monotonic_cst=mono)


def z(ref, s):
    return (s - np.median(ref)) / ref.std()


for seed in map(int, args.seeds.split(",")):
    det, split = trained_autoencoder(df, "time", seed)
    fit, cal = label_rows(split, len(df))
    test = split.test
    raw = residual_features(det, X, ("raw",))[0]
    ae = np.log(det.anomaly_score(X))
    m = np.column_stack([raw, ae])
    frauds, normals = fit[y[fit] == 1], fit[y[fit] == 0]
    order = np.random.default_rng(seed).permutation(frauds)
    for lab in args.labels.split(","):
        n = len(frauds) if lab == "all" else int(lab)
        keep = np.sort(np.concatenate([normals, order[:n]]))
        row = {"seed": seed, "labels": lab, "ae": float(average_precision_score(y[test], ae[test]))}
        with threadpool_limits(2):
            h_raw = head().fit(raw[keep], y[keep])
            lo_raw = h_raw.decision_function(raw)
            h_ae = head().fit(m[keep], y[keep])
            h_mono = head([0] * raw.shape[1] + [1]).fit(m[keep], y[keep])
        nref = keep[y[keep] == 0]
        w = n / (n + 25)
        row["head_raw"] = float(average_precision_score(y[test], lo_raw[test]))
        row["blend_raw"] = float(average_precision_score(
            y[test], w * z(lo_raw[nref], lo_raw[test]) + (1 - w) * z(ae[nref], ae[test])))
        for name, h in (("head_ae", h_ae), ("head_mono", h_mono)):
            lo = h.decision_function(m)
            row[name] = float(average_precision_score(y[test], lo[test]))
            row["blend_" + name[5:]] = float(average_precision_score(
                y[test], w * z(lo[nref], lo[test]) + (1 - w) * z(ae[nref], ae[test])))
        row["load"] = os.getloadavg()[0]
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
