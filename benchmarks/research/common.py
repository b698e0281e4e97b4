"""Shared harness: data loading, splits (guide / time-ordered), preprocessing,
metrics, label-free thresholds, score functions. Single-core by design."""
import os

for _k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
           "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_k] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import json

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler

OUT = os.environ.get("AEDETECT_RESEARCH_OUT", "runs/research")
CACHE = os.path.join(OUT, "cache_creditcard.npz")
RESULTS = os.path.join(OUT, "results")
os.makedirs(RESULTS, exist_ok=True)


def data_path():
    """The verified ULB file, fetched into aedetect's cache on first use."""
    from aedetect.data.fetch import fetch_creditcard

    return fetch_creditcard()


def load():
    """Return raw frame columns as arrays: X (n,30) in CSV column order
    [Time, V1..V28, Amount], y (n,)."""
    if os.path.exists(CACHE):
        z = np.load(CACHE)
        return z["X"], z["y"]
    df = pd.read_csv(data_path(), engine="pyarrow")
    cols = ["Time"] + [f"V{i}" for i in range(1, 29)] + ["Amount"]
    X = df[cols].to_numpy(np.float64)
    y = df["Class"].to_numpy(np.int64)
    np.savez(CACHE, X=X, y=y)
    return X, y


# ----------------------------------------------------------------- splits
def split_guide(y, seed):
    """Guide protocol. Returns dict of index arrays: train (normals), val
    (normals), sel (labelled: 12 frauds + 228 normals), test (480 + 33520)."""
    rng = np.random.default_rng(seed)
    fr = np.flatnonzero(y == 1)
    no = np.flatnonzero(y == 0)
    fr = rng.permutation(fr)
    no = rng.permutation(no)
    test = np.concatenate([fr[:480], no[:33520]])
    sel = np.concatenate([fr[480:], no[33520:33520 + 228]])
    rest = no[33520 + 228:]
    nval = int(round(0.1 * len(rest)))
    val = rest[:nval]
    train = rest[nval:]
    return dict(train=train, val=val, sel=sel, test=test)


def split_time(y, Xraw):
    """Time-ordered protocol: sort by Time (stable); first 70% rows -> train
    (normals only); next 10% -> val normals + selection (all its rows,
    labelled); last 20% -> test."""
    order = np.argsort(Xraw[:, 0], kind="stable")
    n = len(order)
    a, b = int(0.7 * n), int(0.8 * n)
    tr = order[:a]
    mid = order[a:b]
    te = order[b:]
    return dict(train=tr[y[tr] == 0], val=mid[y[mid] == 0], sel=mid, test=te)


# ----------------------------------------------------------- preprocessing
def features(Xraw, mode):
    """Feature engineering on raw [Time, V1..V28, Amount].
    raw     : all 30 columns as-is
    logamt  : drop Time, Amount -> log1p(Amount)                 (29 cols)
    hour    : Time -> sin/cos(2*pi*hour/24), Amount -> log1p      (31 cols)
    """
    V = Xraw[:, 1:29]
    t = Xraw[:, 0]
    amt = Xraw[:, 29]
    if mode == "raw":
        return Xraw.copy()
    if mode == "logamt":
        return np.column_stack([V, np.log1p(amt)])
    if mode == "hour":
        h = (t / 3600.0) % 24.0
        return np.column_stack([np.sin(2 * np.pi * h / 24), np.cos(2 * np.pi * h / 24), V, np.log1p(amt)])
    raise ValueError(mode)


def make_scaler(kind):
    if kind == "standard":
        return StandardScaler()
    if kind == "robust":
        return RobustScaler()
    if kind == "quantile":
        return QuantileTransformer(output_distribution="normal", n_quantiles=1000, subsample=200000, random_state=0)
    raise ValueError(kind)


def prepare(Xraw, idx, feat="raw", scaler="standard"):
    """Features then scaler fitted on TRAIN normals only. Returns dict split->float32 array."""
    F = features(Xraw, feat)
    sc = make_scaler(scaler).fit(F[idx["train"]])
    out = {k: sc.transform(F[v]).astype(np.float32) for k, v in idx.items()}
    if scaler == "quantile":  # clip the +-5.2 saturation is already bounded
        pass
    return out


# ------------------------------------------------------------------ scores
class Maha:
    """Mahalanobis distance^2 with (mean, cov) fitted on given rows (ridge 1e-6*trace/d)."""
    def fit(self, Z):
        Z = np.asarray(Z, np.float64)
        self.mu = Z.mean(0)
        C = np.cov(Z, rowvar=False)
        C += np.eye(C.shape[0]) * 1e-6 * np.trace(C) / C.shape[0]
        self.P = np.linalg.inv(C)
        return self

    def score(self, Z):
        D = np.asarray(Z, np.float64) - self.mu
        return np.einsum("ij,jk,ik->i", D, self.P, D)


def zlog(s, ref):
    """z-score of log(score) w.r.t. reference (validation-normal) scores."""
    ls, lr = np.log(np.maximum(s, 1e-12)), np.log(np.maximum(ref, 1e-12))
    return (ls - lr.mean()) / (lr.std() + 1e-12)


# ----------------------------------------------------------------- metrics
QS = (99.5, 99.8, 99.9)


def metrics(y, s):
    p, r, _ = precision_recall_curve(y, s)
    return dict(roc=roc_auc_score(y, s), pr=average_precision_score(y, s),
                r_at_p93=float(r[p >= 0.93].max()) if np.any(p >= 0.93) else 0.0,
                p_at_r433=float(p[r >= 0.433].max()))


def prf(y, s, t):
    pred = s > t
    tp = int(np.sum(pred & (y == 1)))
    P = tp / max(pred.sum(), 1)
    R = tp / max((y == 1).sum(), 1)
    F = 2 * P * R / max(P + R, 1e-12)
    return dict(f1=F, p=P, r=R)


def best_f1_threshold(y, s):
    """Threshold maximizing F1 on a LABELLED set (the 12-fraud selection set)."""
    p, r, t = precision_recall_curve(y, s)
    f = 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-12)
    i = int(np.argmax(f))
    return float(t[i])


def evaluate(name, s_val, s_sel, s_test, y_sel, y_test, extra=None):
    """All metrics for one score. Labels used: y_test for reporting only,
    y_sel only for the 'sel' best-F1 threshold."""
    m = metrics(y_test, s_test)
    for q in QS:
        t = np.percentile(s_val, q)
        for k, v in prf(y_test, s_test, t).items():
            m[f"q{q}_{k}"] = v
    t = best_f1_threshold(y_sel, s_sel)
    for k, v in prf(y_test, s_test, t).items():
        m[f"sel_{k}"] = v
    m["score"] = name
    if extra:
        m.update(extra)
    return m


def append_results(path, rows):
    with open(path, "a") as f:
        for r in rows:
            f.write(json.dumps(r, default=float) + "\n")


def set_tf_single_thread():
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf
