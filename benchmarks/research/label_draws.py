"""What the label-aware research scripts (label_mono.py, devnet.py) share: one seed's cached
ULB autoencoder on the time protocol with the label curve's draws of labelled frauds, the
product's head, and the blend's standardisation."""
import numpy as np
from bench_hybrid import trained_autoencoder

from aedetect.data.creditcard import CREDITCARD
from aedetect.model.hybrid import HybridDetector, label_rows, residual_features


def seed_draws(df, seed: int, labels: str):
    """(det, test rows, raw features, log score of every row, and per count in `labels` (comma
    separated, "all" for every fraud): (label, n, the rows a head learns from: the training
    period's normals and the first n of the seed's draw of its frauds))."""
    X, y = df[list(CREDITCARD.features)], df[CREDITCARD.label].to_numpy().astype(int)
    det, split = trained_autoencoder(df, "time", seed)
    fit, _ = label_rows(split, len(df))
    raw = residual_features(det, X, ("raw",))[0]
    ae = np.log(det.anomaly_score(X))
    frauds, normals = fit[y[fit] == 1], fit[y[fit] == 0]
    order = np.random.default_rng(seed).permutation(frauds)
    draws = []
    for lab in labels.split(","):
        n = len(frauds) if lab == "all" else int(lab)
        draws.append((lab, n, np.sort(np.concatenate([normals, order[:n]]))))
    return det, split.test, fit, raw, ae, draws


def head(det, **params):
    """The product's head (`HybridDetector.new_head`: its settings, seed 0), with `params`."""
    return HybridDetector(det, seed=0).new_head().set_params(**params)


def z(ref, s):
    """`s` standardised on the reference normals' median and standard deviation, as the blend."""
    return (s - np.median(ref)) / ref.std()
