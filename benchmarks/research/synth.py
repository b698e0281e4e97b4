"""Synthetic check: normals on a noisy NONLINEAR 4-dim manifold in 30 dims
with heteroscedastic (per-feature) noise; anomalies = normal points pushed
off the manifold (sparse shift in 3 random features, 4-6 noise-sigmas) plus
a minority of 'on-manifold but extreme latent' points.
Split sizes mimic the guide protocol (train/val normals, 12-anomaly
selection set, test 500 anomalies + 20000 normals)."""
import numpy as np
from sklearn.preprocessing import StandardScaler

D_DIM, K = 30, 4


def _gen(rng, n, A, B, C, sig):
    z = rng.standard_normal((n, K))
    x = z @ A + np.tanh(z @ C) @ B
    return x + rng.standard_normal((n, D_DIM)) * sig, z


def make_synth(seed, kind="offmanifold"):
    prng = np.random.default_rng(12345)  # fixed generator geometry
    A = prng.standard_normal((K, D_DIM)) / np.sqrt(K)
    C = prng.standard_normal((K, 8)) * 1.5
    B = prng.standard_normal((8, D_DIM)) / np.sqrt(8)
    sig = np.exp(prng.uniform(np.log(0.05), np.log(0.5), D_DIM))  # heteroscedastic noise
    rng = np.random.default_rng(seed)
    ntr, nva, nsel_n, nsel_a, nte_n, nte_a = 50000, 5000, 228, 12, 20000, 500
    Xn, _ = _gen(rng, ntr + nva + nsel_n + nte_n, A, B, C, sig)
    na = nsel_a + nte_a
    Xa, _ = _gen(rng, na, A, B, C, sig)
    if kind == "offmanifold":
        for i in range(na):
            j = rng.choice(D_DIM, 3, replace=False)
            Xa[i, j] += rng.choice([-1, 1], 3) * rng.uniform(4, 6, 3) * sig[j]
    tr = Xn[:ntr]
    va = Xn[ntr:ntr + nva]
    seln = Xn[ntr + nva:ntr + nva + nsel_n]
    ten = Xn[ntr + nva + nsel_n:]
    sel = np.vstack([Xa[:nsel_a], seln])
    te = np.vstack([Xa[nsel_a:], ten])
    ysel = np.r_[np.ones(nsel_a), np.zeros(nsel_n)].astype(int)
    yte = np.r_[np.ones(nte_a), np.zeros(nte_n)].astype(int)
    sc = StandardScaler().fit(tr)
    D = {k: sc.transform(v).astype(np.float32) for k, v in dict(train=tr, val=va, sel=sel, test=te).items()}
    return D, ysel, yte
