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
from common import real_data  # noqa: E402
from label_draws import head, seed_draws, z  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--seeds", default="0,1,2,3,4")
ap.add_argument("--labels", default="25,50,100,all")
ap.add_argument("--out", default="/tmp/label_mono.jsonl")
args = ap.parse_args()
df = real_data()[0]
X, y = df[list(CREDITCARD.features)], df[CREDITCARD.label].to_numpy().astype(int)


for seed in map(int, args.seeds.split(",")):
    det, test, _, raw, ae, draws = seed_draws(df, seed, args.labels)
    m = np.column_stack([raw, ae])
    for lab, n, keep in draws:
        row = {"seed": seed, "labels": lab, "ae": float(average_precision_score(y[test], ae[test]))}
        with threadpool_limits(2):
            h_raw = head(det).fit(raw[keep], y[keep])
            lo_raw = h_raw.decision_function(raw)
            h_ae = head(det).fit(m[keep], y[keep])
            h_mono = head(det, monotonic_cst=[0] * raw.shape[1] + [1]).fit(m[keep], y[keep])
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
