"""Cache residuals of N networks per seed (same split, network seeds s + 1000 k) for offline
combination experiments (issue 26 research)."""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
from sklearn.base import clone  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.data.fetch import fetch_creditcard  # noqa: E402
from aedetect.data.io import read_table  # noqa: E402
from aedetect.training.config import TrainConfig  # noqa: E402
from aedetect.training.workflow import train_detector  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--protocol", default="guide")
ap.add_argument("--seeds", default="0,1,2,3,4")
ap.add_argument("--members", type=int, default=5)
ap.add_argument("--out", default="/tmp/ens")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
df = read_table(fetch_creditcard())
feats = list(CREDITCARD.features)
for seed in map(int, args.seeds.split(",")):
    res = train_detector(df, TrainConfig(protocol=args.protocol, seed=seed, members=1), CREDITCARD)
    split, d0 = res.split, res.detector
    tr, va, te = (df.iloc[i][feats] for i in (split.train, split.validation, split.test))
    out = {"y": df.iloc[split.test]["Class"].to_numpy(),
           "x_test": d0.preprocess(te), "x_val": d0.preprocess(va),
           "x_train": d0.preprocess(tr.sample(min(len(tr), 50_000), random_state=0))}
    for k in range(args.members):
        t = time.perf_counter()
        det = d0 if k == 0 else clone(d0).set_params(seed=seed + 1000 * k).fit(tr, validation_data=va)
        out[f"r_test_{k}"] = det._residuals(out["x_test"]).astype("float32")
        out[f"r_val_{k}"] = det._residuals(out["x_val"]).astype("float32")
        print(seed, k, det.n_epochs_, det.best_epoch_, round(time.perf_counter() - t, 1), flush=True)
    np.savez(f"{args.out}/{args.protocol}_{seed}.npz", **out)
