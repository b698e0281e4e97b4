"""Issue 26 research: the autoencoder's score combined with label-free detectors on the model's
own standardised inputs (input Mahalanobis, IsolationForest), each mapped through its own
distribution on the validation normals and summed. ULB, both protocols, per seed; PR-AUC and
recall at precision 0.93 on the test rows.

  python combo.py --protocols guide,time --seeds 0,1,2,3,4 --out /tmp/combo.jsonl
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
from sklearn.covariance import EmpiricalCovariance  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.data.fetch import fetch_creditcard  # noqa: E402
from aedetect.data.io import read_table  # noqa: E402
from aedetect.evaluation.metrics import recall_at_precision  # noqa: E402
from aedetect.training.config import TrainConfig  # noqa: E402
from aedetect.training.workflow import train_detector  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--protocols", default="guide,time")
ap.add_argument("--seeds", default="0,1,2,3,4")
ap.add_argument("--params", default="{}")
ap.add_argument("--out", default="/tmp/combo.jsonl")
args = ap.parse_args()

df = read_table(fetch_creditcard())
feats = list(CREDITCARD.features)


def zlog(ref, s):
    """log score standardised on the reference normals (median, standard deviation)."""
    lr, ls = np.log(np.maximum(ref, 1e-12)), np.log(np.maximum(s, 1e-12))
    return (ls - np.median(lr)) / lr.std()


def tail(ref, s):
    """-log of the share of reference normals at or above s (add-one)."""
    r = np.sort(ref)
    above = len(r) - np.searchsorted(r, s, side="left")
    return -np.log((above + 1) / (len(r) + 1))


for protocol in args.protocols.split(","):
    for seed in map(int, args.seeds.split(",")):
        config = TrainConfig(protocol=protocol, seed=seed, **json.loads(args.params))
        res = train_detector(df, config, CREDITCARD)
        d, split = res.detector, res.split
        tr = df.iloc[split.train]
        tr = tr[tr.Class == 0]
        val = df.iloc[split.validation]
        val = val[val.Class == 0]
        test = df.iloc[split.test]
        y = test.Class.to_numpy()
        xt, xv, xs = (d.preprocess(t[feats]) for t in (tr, val, test))
        scores = {"ae": (d.anomaly_score(val[feats]), d.anomaly_score(test[feats]))}
        cov = EmpiricalCovariance().fit(xt)
        scores["maha"] = (cov.mahalanobis(xv), cov.mahalanobis(xs))
        iso = IsolationForest(n_estimators=200, random_state=seed, n_jobs=2).fit(xt)
        scores["if"] = (-iso.score_samples(xv) , -iso.score_samples(xs))
        row = {"protocol": protocol, "seed": seed, "load": os.getloadavg()[0]}
        for k, (_, s) in scores.items():
            row[k] = float(average_precision_score(y, s))
        for mapname, fn in (("z", zlog), ("tail", tail)):
            m = {k: fn(v, s) for k, (v, s) in scores.items()}
            for combo in (("ae", "if"), ("ae", "maha"), ("ae", "if", "maha")):
                s = sum(m[k] for k in combo)
                row[f"{mapname}:{'+'.join(combo)}"] = float(average_precision_score(y, s))
                row[f"{mapname}:{'+'.join(combo)}:r93"] = float(recall_at_precision(y, s, 0.93))
        row["ae:r93"] = float(recall_at_precision(y, scores["ae"][1], 0.93))
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
