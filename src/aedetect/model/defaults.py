"""What the detector's `"auto"` parameters become, from the shape of the training data.

The rule, chosen on the development suite (benchmarks/bench_suite.py, docs/experiments.md) and
kept as the credit-card defaults at that data's size:

- network: `w-w/2-code-w/2-w` ReLU, `w` = twice the number of features rounded to a power of
  two between 16 and 128; code = the principal components that hold 90% of the variance of the
  training rows, between 2 and 16;
- batch: about 100 updates per pass over the rows, a power of two between 32 and 2,048;
- epochs: an epoch is at least 50 updates (small sets are passed over several times per epoch),
  training stops early on the validation loss, and runs at most n_rows / 1,000 epochs, between
  10 and 100: a few hundred updates for a few thousand rows, as many as before on the
  credit-card data;
- XLA compilation only from 50,000 rows: below that the compile costs more than it saves.

The detector's `members=3` (an ensemble of three such networks) is a plain default, not a rule of
the data's shape: it won on the credit-card data and on the public sets alike
(docs/experiments.md, "Seed spread and the 3-network ensemble").

Training itself is a loop of our own (`aedetect.model.fitloop`): one traced step, batches cut from the
rows in memory, early stopping in Python. Keras' `model.fit` cost a few seconds of tracing per
fit, most of a small fit's time; the updates and the stopping rule are the same.

Pure functions of the row count, the feature count and a sample of rows, so a test can check
them on small shapes and a reader can see what a fit will do before running it.
"""

from __future__ import annotations

import math

import numpy as np

MIN_WIDTH, MAX_WIDTH = 16, 128
MIN_CODE, MAX_CODE = 2, 16
MIN_BATCH, MAX_BATCH = 32, 2048
UPDATES_PER_EPOCH = 50
JIT_MIN_ROWS = 50_000


def _pow2(value: float) -> int:
    return 2 ** int(round(math.log2(max(value, 1.0))))


def auto_width(n_features: int) -> int:
    """First hidden layer: 2 x features as a power of two, between 16 and 128 (64 for 30)."""
    return int(min(MAX_WIDTH, max(MIN_WIDTH, _pow2(2 * n_features))))


def auto_code_size(x_sample: np.ndarray, variance: float = 0.9) -> int:
    """Principal components holding `variance` of the rows' variance, between 2 and 16.

    A code much wider than the data's intrinsic dimension lets the network pass anomalies
    through unchanged, so they vanish from the residual; on the credit-card data (25 components
    for 90%) this gives 16.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(x_sample, dtype="float64")
    if len(x) > 20_000:
        x = x[np.random.default_rng(0).permutation(len(x))[:20_000]]
    if len(x) < 3:  # too few rows to estimate the components
        k = x.shape[1]
    else:
        ratios = np.nan_to_num(PCA().fit(x).explained_variance_ratio_)  # nan: constant rows
        k = int(np.searchsorted(np.cumsum(ratios), variance) + 1)
    return int(max(MIN_CODE, min(MAX_CODE, k, x.shape[1])))


def auto_architecture(n_rows: int, n_features: int, x_sample: np.ndarray) -> tuple[int, ...]:
    """Hidden layer sizes `w, w/2, code, w/2, w` (see the module docstring)."""
    del n_rows  # the rule does not depend on it today; kept so callers need not change
    w = auto_width(n_features)
    code = min(auto_code_size(x_sample), w // 2)
    return (w, w // 2, code, w // 2, w)


def auto_batch_size(n_rows: int) -> int:
    """About 100 updates per pass: n_rows / 100 as a power of two, between 32 and 2,048."""
    return int(min(MAX_BATCH, max(MIN_BATCH, _pow2(n_rows / 100))))


def passes_per_epoch(n_rows: int, batch_size: int) -> int:
    """Passes over the rows in one epoch, so an epoch is at least 50 updates: the validation
    loss is checked (and early stopping can act) every 50 updates, not every few."""
    steps = max(1, math.ceil(n_rows / batch_size))
    return max(1, math.ceil(UPDATES_PER_EPOCH / steps))


def auto_epochs(n_rows: int) -> int:
    """At most n_rows / 1,000 epochs, between 10 and 100 (early stopping may end sooner)."""
    return int(min(100, max(10, n_rows // 1000)))


def auto_jit(n_rows: int) -> bool:
    """XLA compilation from 50,000 rows: it takes seconds, and pays back only over many steps."""
    return n_rows >= JIT_MIN_ROWS

