"""Offline combinations of cached residuals (ens_cache.py): single network, mean residual of K,
mean score of K, and a calibrated sum with the input Mahalanobis distance."""
import glob
import sys

import numpy as np
from sklearn.metrics import average_precision_score

from aedetect.evaluation.metrics import recall_at_precision
from aedetect.model.scores import contributions, fit_stats

KIND = "residual_mahalanobis"


def score(r_val, r_test):
    st = fit_stats(KIND, r_val.astype("float64"))
    return (contributions(KIND, st, r_val.astype("float64")).sum(1),
            contributions(KIND, st, r_test.astype("float64")).sum(1))


def calib(val, test):
    """-log tail probability of test scores under the validation normals' scores."""
    v = np.sort(val)
    rank = np.searchsorted(v, test, side="right")
    tail = (len(v) - rank + 1) / (len(v) + 1)
    return -np.log(tail)


rows = {}
for path in sorted(glob.glob(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ens/guide_*.npz")):
    d = np.load(path)
    y = d["y"]
    m = len([k for k in d.files if k.startswith("r_test_")])
    res = {}
    for K in (1, 2, 3, 5):
        if K > m:
            continue
        rv = np.mean([d[f"r_val_{k}"] for k in range(K)], 0)
        rt = np.mean([d[f"r_test_{k}"] for k in range(K)], 0)
        res[f"mean_residual_{K}"] = score(rv, rt)[1]
        if K > 1:
            pairs = [score(d[f"r_val_{k}"], d[f"r_test_{k}"]) for k in range(K)]
            res[f"mean_score_{K}"] = np.mean([p[1] for p in pairs], 0)
            cv = np.concatenate([d[f"r_val_{k}"] for k in range(K)], 1)
            ct = np.concatenate([d[f"r_test_{k}"] for k in range(K)], 1)
            res[f"concat_fullcov_{K}"] = score(cv, ct)[1]
    for k in range(m):
        res[f"member_{k}"] = score(d[f"r_val_{k}"], d[f"r_test_{k}"])[1]
    xv, xt = d["x_val"], d["x_test"]
    _, maha_t = score(xv, xt)  # Mahalanobis of the inputs (a zero reconstruction)
    maha_v, _ = score(xv, xv)
    ae_v, ae_t = score(np.mean([d[f"r_val_{k}"] for k in range(min(3, m))], 0),
                       np.mean([d[f"r_test_{k}"] for k in range(min(3, m))], 0))
    res["ens3+maha calibrated"] = calib(ae_v, ae_t) + calib(maha_v, maha_t)
    for name, s in res.items():
        rows.setdefault(name, []).append((average_precision_score(y, s), recall_at_precision(y, s, 0.93)))
for name, v in rows.items():
    a = np.array(v)
    print(f"{name:24s} PR {a[:,0].mean():.3f} ± {a[:,0].std():.3f} [{a[:,0].min():.3f}-{a[:,0].max():.3f}]"
          f"  r93 {a[:,1].mean():.3f} [{a[:,1].min():.3f}-{a[:,1].max():.3f}]  n={len(a)}")
