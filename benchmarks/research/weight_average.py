"""Weight averaging over the last epochs (issue 26 research): each network's weights averaged
over the epochs from `--start` (a share of the epochs) to the end, instead of the best epoch's.
ULB, per seed: PR-AUC and recall at precision 0.93 of the test rows, for the best-epoch weights
(the default) and the averaged ones, from the same training run.

  python weight_average.py --protocol guide --seeds 0,1,2,3,4 --start 0.5,0.75
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

import aedetect.model.fitloop as fitloop  # noqa: E402
from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.data.fetch import fetch_creditcard  # noqa: E402
from aedetect.data.io import read_table  # noqa: E402
from aedetect.evaluation.metrics import recall_at_precision  # noqa: E402
from aedetect.model.scores import contributions, fit_stats  # noqa: E402
from aedetect.training.config import TrainConfig  # noqa: E402
from aedetect.training.workflow import train_detector  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--protocol", default="guide")
ap.add_argument("--seeds", default="0,1,2,3,4")
ap.add_argument("--start", default="0.5,0.75", help="shares of the epochs where averaging starts")
ap.add_argument("--params", default="{}", help="JSON of TrainConfig updates")
ap.add_argument("--out", default="/tmp/weight_average.jsonl")
args = ap.parse_args()
starts = [float(s) for s in args.start.split(",")]


class Snapshots(keras.callbacks.Callback):
    """Keeps each epoch's weights."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([w.copy() for w in self.model.get_weights()])


SNAP: list = []
_run = fitloop.run_epochs


def run_epochs(model, steps, batches, val, **kw):
    snap = Snapshots()
    SNAP.append(snap)
    kw["callbacks"] = [*kw.get("callbacks", ()), snap]
    return _run(model, steps, batches, val, **kw)


fitloop.run_epochs = run_epochs

df = read_table(fetch_creditcard())
feats = list(CREDITCARD.features)
for seed in map(int, args.seeds.split(",")):
    SNAP.clear()
    start = time.perf_counter()
    config = TrainConfig(protocol=args.protocol, seed=seed, **json.loads(args.params))
    tr = train_detector(df, config, CREDITCARD)
    fit_s = time.perf_counter() - start
    det, split = tr.detector, tr.split
    test, val = df.iloc[split.test], df.iloc[split.validation]
    y = test["Class"].to_numpy()
    xt, xv = det.preprocess(test[feats]), det.preprocess(val[feats])
    row = {"protocol": args.protocol, "seed": seed, "epochs": det.n_epochs_, "best": det.best_epoch_,
           "fit_s": round(fit_s, 1), "load": os.getloadavg()[0]}

    def measure(tag):
        st = fit_stats(det.score_type, det._residuals(xv), det.members_)
        s = contributions(det.score_type, st, det._residuals(xt)).sum(1)
        row[f"{tag}_pr"] = round(float(average_precision_score(y, s)), 4)
        row[f"{tag}_r93"] = round(float(recall_at_precision(y, s, 0.93)), 4)
        row[f"{tag}_val"] = float(np.mean(np.square(det._residuals(xv))))

    measure("best")
    snaps = SNAP[-1].weights
    for share in starts:
        first = int(round(share * len(snaps)))
        avg = [np.mean([w[i] for w in snaps[first:]], axis=0) for i in range(len(snaps[0]))]
        det.model_.set_weights(avg)
        measure(f"avg{share}")
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
