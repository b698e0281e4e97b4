"""How reconstruction residuals become one anomaly score per row (higher = more anomalous).

`r = reconstruction - x`, in the preprocessed (standardised) feature space. Statistics are fitted
on validation normals, never on anomalies.

mse                   mean_j r_j^2: the guide's score.
feature_normalized    mean_j r_j^2 / E[r_j^2]: each feature's error relative to its typical
                      error on normal rows, so features the network reconstructs well count more.
residual_mahalanobis  (r - mu)^T P (r - mu), mu and P = mean and (Ledoit-Wolf shrunk) precision
                      of the residuals of normal rows. Normal residuals are correlated across
                      features; an anomaly breaks that pattern even when each error is small.

Each score is a sum of per-feature contributions (`contributions`), which explain a flag: for
the Mahalanobis score, feature j contributes (r - mu)_j * (P (r - mu))_j.

An ensemble of `members` networks (`aedetect.model.network`) gives one residual per member and
feature, member after member: `r` is then (rows, members x features). Each member's residuals
get their own statistics (the Mahalanobis precision is a stack, one (features, features) matrix
per member: it grows with the members, not with their square), the score is the sum of the
members' scores, and a feature's contribution is the sum of its members' (`n_features` folds
them), so a flag is still explained by the table's features.
"""

from __future__ import annotations

import numpy as np

SCORES = ("mse", "feature_normalized", "residual_mahalanobis")


def check_score(kind: str) -> str:
    if kind not in SCORES:
        raise ValueError(f"score must be one of {SCORES}; got {kind!r}")
    return kind


def fit_stats(kind: str, residuals: np.ndarray, members: int = 1) -> dict[str, np.ndarray]:
    """Statistics of normal rows' residuals that the score needs (an ensemble's: `residuals`
    are (rows, members x features), and each member's get their own, see the module docstring)."""
    check_score(kind)
    r = np.asarray(residuals, dtype="float64")
    if kind == "mse":
        return {}
    if kind == "feature_normalized":
        return {"scale": np.maximum((r**2).mean(axis=0), 1e-12)}
    from sklearn.covariance import LedoitWolf

    if len(r) < 2:
        raise ValueError("residual_mahalanobis needs at least 2 validation rows")
    if members == 1:
        lw = LedoitWolf().fit(r)
        return {"mean": lw.location_, "precision": lw.precision_}
    fits = [LedoitWolf().fit(part) for part in np.split(r, members, axis=1)]
    return {"mean": np.concatenate([f.location_ for f in fits]),
            "precision": np.stack([f.precision_ for f in fits])}


def member_residuals(reconstruction: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`reconstruction - x` when the network is an ensemble: its output holds each member's
    reconstruction of the `x.shape[1]` features, member after member; returns the residuals in
    that layout, (rows, members x features), computed in place on `reconstruction`."""
    n, d = x.shape
    out = reconstruction.reshape(n, reconstruction.shape[1] // d, d)
    out -= x[:, None, :]
    return reconstruction


def fold_members(values: np.ndarray, n_features: int, how: str = "sum") -> np.ndarray:
    """Per-feature values of an ensemble's (rows, members x features) layout: each feature's
    members summed (`how="sum"`, contributions: row sums stay the scores) or averaged."""
    if values.shape[1] == n_features:
        return values
    blocks = values.reshape(len(values), values.shape[1] // n_features, n_features)
    return blocks.sum(axis=1) if how == "sum" else blocks.mean(axis=1)


def contributions(kind: str, stats: dict, r: np.ndarray, n_features: int | None = None) -> np.ndarray:
    """Per-feature contributions whose row sums are the scores; an ensemble's residuals (see the
    module docstring) fold to `n_features` columns.

    Never returns a NaN or infinite score quietly: the preprocessing refuses values the network
    cannot compute with, and should a row still come out non-finite, this raises (naming it)
    rather than hand back a score that no threshold flags.
    """
    d = r.shape[1]
    r = np.asarray(r, dtype="float64")
    if kind == "mse":
        out = (r * r) / d
    elif kind == "feature_normalized":
        out = (r * r) / (stats["scale"] * d)
    else:
        c = r - stats["mean"]
        p = stats["precision"]
        if p.ndim == 3:  # an ensemble: member k's residuals with member k's precision
            # one matrix product per member (BLAS): an einsum over the stack is 4x slower
            out = np.empty_like(c)
            k = p.shape[1]
            for m in range(len(p)):
                np.matmul(c[:, m * k:(m + 1) * k], p[m], out=out[:, m * k:(m + 1) * k])
            out *= c
        else:
            out = (c @ p) * c
    check_finite_scores(out)
    return out if n_features is None else fold_members(out, n_features)


def stacked_contributions(kind: str, stats: dict, r: np.ndarray, work: np.ndarray | None = None,
                          out: np.ndarray | None = None) -> np.ndarray:
    """`contributions(kind, stats, r', n_features)` of an ensemble's residuals held member-major,
    `r` of shape (members, rows, features) (r' is the (rows, members x features) layout), folded
    to (rows, features): each member's contributions in one contiguous block, then summed.
    Computes in place on `r`; `work`, an array shaped like `r`, takes the Mahalanobis product
    (else a new one); `out` (rows, features) the result (else a new one)."""
    members, _, d = r.shape
    if kind == "mse":
        r *= r
        r /= members * d
        prod = r
    elif kind == "feature_normalized":
        r *= r
        r /= stats["scale"].reshape(members, 1, d) * (members * d)
        prod = r
    else:
        r -= stats["mean"].reshape(members, 1, d)
        prod = np.matmul(r, stats["precision"], out=work)  # one BLAS product per member
        prod *= r
    out = prod.sum(axis=0, out=out)
    check_finite_scores(out)
    return out


def check_finite_scores(contrib: np.ndarray) -> None:
    """Raise DataError naming the first row whose contributions are not all finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(contrib.sum(axis=1))  # one pass: NaN or inf anywhere shows in the sum
    if not ok.all():
        from aedetect.errors import DataError

        row = int(np.flatnonzero(~ok)[0])
        raise DataError(f"row {row + 1}: the score is not finite (the network overflowed on "
                        f"this row's values); {int((~ok).sum())} such row(s) were not scored")


def contributions_tf(kind: str, stats: dict, r):
    """The same per-feature contributions as `contributions`, in TensorFlow ops (for exports):
    [rows, members x features], member after member; an ensemble's Mahalanobis parts each with
    its member's precision. Computed in float64 like the NumPy path: a Mahalanobis score
    reaches the hundreds, where float32 alone would differ from it in the fifth significant
    digit."""
    import tensorflow as tf

    r = tf.cast(r, tf.float64)
    d = float(r.shape[-1])
    if kind == "mse":
        return tf.square(r) / d
    if kind == "feature_normalized":
        return tf.square(r) / tf.constant(stats["scale"], tf.float64) / d
    c = r - tf.constant(stats["mean"], tf.float64)
    p = tf.constant(stats["precision"], tf.float64)
    if len(p.shape) == 3:  # an ensemble: member k's residuals with member k's precision
        c = tf.reshape(c, [-1, p.shape[0], p.shape[1]])
        return tf.reshape(tf.einsum("rki,kij->rkj", c, p) * c, [-1, p.shape[0] * p.shape[1]])
    return tf.matmul(c, p) * c


def score_tf(kind: str, stats: dict, r):
    """The same row scores as `contributions(...).sum(1)`, in TensorFlow ops (for exports)."""
    import tensorflow as tf

    return tf.reduce_sum(contributions_tf(kind, stats, r), axis=1)


def stats_to_config(stats: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


def stats_from_config(cfg: dict) -> dict:
    return {k: np.asarray(v, dtype="float64") for k, v in cfg.items()}
