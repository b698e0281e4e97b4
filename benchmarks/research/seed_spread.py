"""Seed spread of the default autoencoder on ULB (issue 26 research): per seed, PR-AUC,
recall at precision 0.93, epochs run and best epoch, fit seconds; variants by --variant.

  python seed_spread.py --protocol guide --seeds 0,1,2,3,4 --variant base
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

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
ap.add_argument("--variant", default="base")
ap.add_argument("--params", default="{}", help="JSON of TrainConfig updates")
ap.add_argument("--ens", type=int, default=1, help="average residuals of N networks (post hoc)")
ap.add_argument("--out", default="/tmp/seed_spread.jsonl")
ap.add_argument("--selection-share", type=float, default=None,
                help="the time protocol's selection window (default 0.1): smaller trains on later rows")
ap.add_argument("--no-time-feature", action="store_true", help="Time is not a feature (no hour of day)")
args = ap.parse_args()

df = read_table(fetch_creditcard())
if args.selection_share is not None:
    import aedetect.data.splits as splits_module

    splits_module.SELECTION_SHARE = args.selection_share
schema = CREDITCARD.model_copy(update={"time_feature": False}) if args.no_time_feature else CREDITCARD
feats = list(CREDITCARD.features)
for seed in map(int, args.seeds.split(",")):
    start = time.perf_counter()
    config = TrainConfig(protocol=args.protocol, seed=seed, **json.loads(args.params))
    dets = [train_detector(df, config, schema)]
    split = dets[0].split
    for k in range(1, args.ens):  # the same split, another network seed
        det = clone(dets[0].detector).set_params(seed=seed + 1000 * k)
        det.fit(df.iloc[split.train][feats], validation_data=df.iloc[split.validation][feats])
        dets.append(type("R", (), {"detector": det}))
    fit_s = time.perf_counter() - start
    split = dets[0].split
    hist = dets[0].detector.history_
    test, val = df.iloc[split.test], df.iloc[split.validation]
    y = test["Class"].to_numpy()
    d0 = dets[0].detector
    if args.ens == 1:
        s = d0.anomaly_score(test[feats])
    else:
        rt = np.mean([r.detector._residuals(r.detector.preprocess(test[feats])) for r in dets], 0)
        rv = np.mean([r.detector._residuals(r.detector.preprocess(val[val.Class == 0][feats]))
                      for r in dets], 0)
        st = fit_stats(d0.score_type, rv)
        s = contributions(d0.score_type, st, rt).sum(1)
    row = {"variant": args.variant, "protocol": args.protocol, "seed": seed,
           "pr_auc": float(average_precision_score(y, s)),
           "r93": float(recall_at_precision(y, s, 0.93)),
           "epochs": d0.n_epochs_, "best": d0.best_epoch_, "fit_s": round(fit_s, 1),
           "val_best": float(min(hist["val_loss"])), "load": os.getloadavg()[0]}
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
