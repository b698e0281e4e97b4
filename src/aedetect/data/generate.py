"""Generated data with the credit-card schema and a known share of anomalies.

Normal rows lie near a curved low-dimensional manifold (like real transactions, whose PCA
components are uncorrelated but not independent); anomalies are pushed off it, at other hours
and with other amounts. Used by the tests and as the offline fallback of the demo.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aedetect.data.schema import CREDITCARD

LATENT = 6
TWO_DAYS = 172_792.0  # the span of the real data's Time column


def generate_transactions(
    n_rows: int = 50_000, fraud_rate: float = 0.01, seed: int = 0
) -> pd.DataFrame:
    """Return `n_rows` rows: Time, V1..V28, Amount, Class, with round(n_rows*fraud_rate) frauds."""
    if n_rows < 10:
        raise ValueError(f"n_rows must be at least 10; got {n_rows}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5); got {fraud_rate!r}")
    structure = np.random.default_rng(12345)  # the manifold is the same for every seed
    w1 = structure.normal(size=(LATENT, 16)) / np.sqrt(LATENT)
    w2 = structure.normal(size=(16, 28)) / 2.0
    rng = np.random.default_rng(seed)
    n_fraud = int(round(n_rows * fraud_rate))
    n_normal = n_rows - n_fraud

    z = rng.normal(size=(n_normal, LATENT))
    v = np.tanh(z @ w1) @ w2 + 0.15 * rng.normal(size=(n_normal, 28))
    amount = np.exp(3.0 + 0.8 * z[:, 0] + 0.5 * rng.normal(size=n_normal))
    hours = np.clip(rng.normal(14.0, 4.0, size=n_normal), 0, 23.99)

    zf = rng.normal(size=(n_fraud, LATENT))
    vf = np.tanh(zf @ w1) @ w2
    # Off-manifold push of varying strength: some anomalies are subtle, most are clear.
    strength = rng.gamma(2.0, 1.0, size=(n_fraud, 1))
    direction = rng.normal(size=(n_fraud, 28))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    vf = vf + strength * 2.0 * direction + 0.15 * rng.normal(size=(n_fraud, 28))
    amount_f = np.where(rng.random(n_fraud) < 0.5, rng.uniform(0.5, 5.0, n_fraud),
                        np.exp(rng.normal(5.5, 1.0, n_fraud)))
    hours_f = rng.uniform(0, 24, size=n_fraud)

    v_all = np.vstack([v, vf])
    hour_all = np.concatenate([hours, hours_f])
    day = rng.integers(0, 2, size=n_rows)
    time = np.clip(day * 86400.0 + hour_all * 3600.0, 0, TWO_DAYS)
    frame = pd.DataFrame(v_all, columns=[f"V{i}" for i in range(1, 29)])
    frame.insert(0, "Time", np.round(time))
    frame["Amount"] = np.round(np.concatenate([amount, amount_f]), 2)
    frame["Class"] = np.concatenate([np.zeros(n_normal, "int8"), np.ones(n_fraud, "int8")])
    frame = frame.sample(frac=1.0, random_state=seed).sort_values("Time", kind="stable")
    return frame.reset_index(drop=True)[[*CREDITCARD.features, "Class"]]
