"""Non-network baselines on any protocol: input Mahalanobis, PCA reconstruction
(residual SSE with k = #components for 90% variance, fitted on train normals;
also PCA residual-Mahalanobis), IsolationForest (200 trees, fitted on train
normals). Usage: python baselines.py --tag B_guide --protocol guide --feat logamt"""
import argparse

import numpy as np
from common import RESULTS, Maha, append_results, evaluate, load, prepare, split_guide, split_time
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

ap = argparse.ArgumentParser()
ap.add_argument("--tag", required=True)
ap.add_argument("--protocol", default="guide")
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--feat", default="logamt")
ap.add_argument("--scaler", default="standard")
args = ap.parse_args()

for seed in [int(s) for s in args.seeds.split(",")]:
    if args.protocol == "synth":
        from synth import make_synth
        D, ysel, ytest = make_synth(seed)
    else:
        Xraw, y = load()
        idx = split_guide(y, seed) if args.protocol == "guide" else split_time(y, Xraw)
        D = prepare(Xraw, idx, args.feat, args.scaler)
        ysel, ytest = y[idx["sel"]], y[idx["test"]]
    ex = dict(seed=seed, tag=args.tag, protocol=args.protocol, feat=args.feat)
    rows = []
    m = Maha().fit(D["train"])
    s = {k: m.score(D[k]) for k in ("val", "sel", "test")}
    rows.append(evaluate("input_maha", s["val"], s["sel"], s["test"], ysel, ytest, ex))
    p = PCA(n_components=0.90, random_state=0).fit(D["train"])
    R = {k: D[k] - p.inverse_transform(p.transform(D[k])) for k in s}
    s = {k: (R[k] ** 2).sum(1) for k in R}
    rows.append(evaluate(f"pca_sse(k={p.n_components_})", s["val"], s["sel"], s["test"], ysel, ytest, ex))
    mr = Maha().fit(R["val"])
    s = {k: mr.score(R[k]) for k in R}
    rows.append(evaluate(f"pca_resmaha(k={p.n_components_})", s["val"], s["sel"], s["test"], ysel, ytest, ex))
    rng = np.random.RandomState(seed)
    itf = IsolationForest(n_estimators=200, random_state=rng, n_jobs=1).fit(D["train"])
    s = {k: -itf.score_samples(D[k]) for k in ("val", "sel", "test")}
    rows.append(evaluate("iforest", s["val"], s["sel"], s["test"], ysel, ytest, ex))
    append_results(f"{RESULTS}/{args.tag}.jsonl", rows)
    print(seed, " | ".join(f"{r['score']}: roc {r['roc']:.3f} pr {r['pr']:.3f}" for r in rows), flush=True)
