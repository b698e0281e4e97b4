"""Preprocessing fitted on training normals, stored as plain numbers in the model's manifest.

Steps, in order: log1p of heavy-tailed non-negative columns (e.g. `Amount`); periodic columns
(e.g. `Time`, period one day) become sin/cos of their phase, so the model sees the hour of day
rather than a clock that only grows; then every column is standardised. The same arithmetic
exists in NumPy (batch scoring) and in TensorFlow ops (tf.data pipelines, the SavedModel export);
a test keeps them equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from aedetect.data.schema import MAX_ABS_VALUE
from aedetect.errors import DataError


class Preprocessor:
    def __init__(
        self,
        feature_names: Sequence[str],
        log_columns: Iterable[str] = (),
        periodic_columns: Iterable[tuple[str, float]] = (),
    ):
        self.feature_names = list(feature_names)
        self.log_columns = [c for c in log_columns if c in self.feature_names]
        self.periodic_columns = [(c, float(p)) for c, p in periodic_columns
                                 if c in self.feature_names]
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self._count = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None

    # -- layout -----------------------------------------------------------------------------
    @property
    def n_features_in(self) -> int:
        return len(self.feature_names)

    @property
    def output_names(self) -> list[str]:
        periodic = dict(self.periodic_columns)
        names: list[str] = []
        for c in self.feature_names:
            if c in periodic:
                names += [f"{c}:sin", f"{c}:cos"]
            elif c in self.log_columns:
                names.append(f"log1p({c})")
            else:
                names.append(c)
        return names

    @property
    def n_features_out(self) -> int:
        return len(self.output_names)

    def _expand_np(self, x: np.ndarray) -> np.ndarray:
        periodic = dict(self.periodic_columns)
        cols = []
        for j, c in enumerate(self.feature_names):
            v = x[:, j]
            if c in periodic:
                phase = (2 * np.pi / periodic[c]) * v
                cols += [np.sin(phase), np.cos(phase)]
            elif c in self.log_columns:
                cols.append(np.log1p(np.maximum(v, 0.0)))
            else:
                cols.append(v)
        return np.stack(cols, axis=1)

    def _expand_tf(self, x):
        import tensorflow as tf

        periodic = dict(self.periodic_columns)
        cols = []
        for j, c in enumerate(self.feature_names):
            v = x[:, j]
            if c in periodic:
                phase = (2 * np.pi / periodic[c]) * v
                cols += [tf.sin(phase), tf.cos(phase)]
            elif c in self.log_columns:
                cols.append(tf.math.log1p(tf.maximum(v, 0.0)))
            else:
                cols.append(v)
        return tf.stack(cols, axis=1)

    # -- fitting ----------------------------------------------------------------------------
    def partial_fit(self, x: np.ndarray) -> Preprocessor:
        """Accumulate mean/variance over chunks, so a file larger than memory can be fitted."""
        e = self._expand_np(self._check(x, fitted=False).astype("float64"))
        if self._sum is None:
            self._sum = np.zeros(e.shape[1])
            self._sumsq = np.zeros(e.shape[1])
        # Shift by the first chunk's mean so the sum of squares keeps its precision.
        if self._count == 0:
            self._shift = e.mean(axis=0)
        d = e - self._shift
        self._sum += d.sum(axis=0)
        self._sumsq += (d * d).sum(axis=0)
        self._count += len(e)
        mean_d = self._sum / self._count
        var = np.maximum(self._sumsq / self._count - mean_d**2, 0.0)
        self.mean_ = (mean_d + self._shift).astype("float32")
        std = np.sqrt(var)
        self.scale_ = np.where(std > 1e-12, std, 1.0).astype("float32")
        return self

    def fit(self, x: np.ndarray) -> Preprocessor:
        self._count, self._sum, self._sumsq = 0, None, None
        return self.partial_fit(x)

    # -- transforming -----------------------------------------------------------------------
    def _check(self, x: np.ndarray, fitted: bool = True) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features_in:
            raise DataError(
                f"expected {self.n_features_in} feature columns {self.feature_names}; "
                f"got an array of shape {x.shape}"
            )
        if x.dtype.kind in "fiu":
            lo, hi = self.limits(fitted)
            with np.errstate(invalid="ignore"):
                ok = (x >= lo) & (x <= hi)  # False for NaN too
            if not ok.all():
                r, c = np.argwhere(~ok)[0]
                raise DataError(f"column {self.feature_names[c]!r}, row {r + 1}: "
                                f"{self.value_problem(int(c), x[r, c])}")
        return x

    def limits(self, fitted: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest raw value accepted per input column.

        Every value must be finite with magnitude at most `MAX_ABS_VALUE`; once fitted, a
        pass-through column must also stay within `MAX_ABS_VALUE` standard deviations of its
        training mean (a near-constant training column has a tiny scale). Inside these bounds the
        float32 network cannot overflow, so a huge value scores high (and is flagged) instead of
        scoring NaN; outside them the value is refused with its reason.
        """
        lo = np.full(self.n_features_in, -MAX_ABS_VALUE)
        hi = np.full(self.n_features_in, MAX_ABS_VALUE)
        if fitted and self.mean_ is not None:
            plain_in, plain_out = self._layout()
            mean = self.mean_[plain_out].astype("float64")
            scale = self.scale_[plain_out].astype("float64")
            lo[plain_in] = np.maximum(lo[plain_in], mean - MAX_ABS_VALUE * scale)
            hi[plain_in] = np.minimum(hi[plain_in], mean + MAX_ABS_VALUE * scale)
        return lo, hi

    def value_problem(self, j: int, value) -> str:
        """Why input column `j` refuses `value` (see `limits`)."""
        from aedetect.data.schema import out_of_range_reason

        value = float(value)
        if not np.isfinite(value):
            return f"value {value!r} is not finite"
        if abs(value) > MAX_ABS_VALUE:
            return out_of_range_reason(value)
        return (f"value {value!r} is more than {MAX_ABS_VALUE:g} standard deviations from the "
                "training mean, beyond what the model can score")

    def problems(self, x: np.ndarray) -> np.ndarray:
        """Per-row reason (None = the row is in range), for callers that skip bad rows."""
        x = np.asarray(x, dtype="float64")
        lo, hi = self.limits()
        with np.errstate(invalid="ignore"):
            bad = ~((x >= lo) & (x <= hi))
        reasons = np.full(len(x), None, dtype=object)
        for r in np.flatnonzero(bad.any(axis=1)):
            c = int(np.flatnonzero(bad[r])[0])
            reasons[r] = f"column {self.feature_names[c]!r}: {self.value_problem(c, x[r, c])}"
        return reasons

    def _require_fitted(self) -> None:
        if self.mean_ is None:
            raise RuntimeError("this Preprocessor is not fitted yet; call fit() first")

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 rows, computed column block by column block (no per-row Python).

        Pass-through columns are copied with one gather; only log and periodic columns get their
        own arithmetic, in float64 before the cast (the phase of a large `Time` needs it).
        """
        self._require_fitted()
        x = self._check(x)  # refuses values the float32 network cannot score (see `limits`)
        out = np.empty((len(x), self.n_features_out), dtype="float32")
        plain_in, plain_out = self._layout()
        if plain_in:
            out[:, plain_out] = x[:, plain_in]
        periodic = dict(self.periodic_columns)
        j_out = 0
        for j, c in enumerate(self.feature_names):
            if c in periodic:
                phase = (2 * np.pi / periodic[c]) * np.asarray(x[:, j], dtype="float64")
                out[:, j_out], out[:, j_out + 1] = np.sin(phase), np.cos(phase)
                j_out += 2
                continue
            if c in self.log_columns:
                out[:, j_out] = np.log1p(np.maximum(np.asarray(x[:, j], dtype="float64"), 0.0))
            j_out += 1
        out -= self.mean_
        out /= self.scale_
        return out

    def _layout(self) -> tuple[list[int], list[int]]:
        """Input and output positions of the columns that pass through unchanged."""
        periodic = dict(self.periodic_columns)
        plain_in, plain_out, j_out = [], [], 0
        for j, c in enumerate(self.feature_names):
            if c in periodic:
                j_out += 2
                continue
            if c not in self.log_columns:
                plain_in.append(j)
                plain_out.append(j_out)
            j_out += 1
        return plain_in, plain_out

    def transform_tf(self, x):
        """The same transform in TensorFlow ops, for tf.data pipelines and exported graphs."""
        import tensorflow as tf

        self._require_fitted()
        x = tf.cast(x, tf.float32)
        return (self._expand_tf(x) - tf.constant(self.mean_)) / tf.constant(self.scale_)

    # -- persistence --------------------------------------------------------------------------
    def to_config(self) -> dict:
        self._require_fitted()
        return {
            "feature_names": self.feature_names,
            "log_columns": self.log_columns,
            "periodic_columns": [[c, p] for c, p in self.periodic_columns],
            "output_names": self.output_names,
            "mean": [float(v) for v in self.mean_],
            "scale": [float(v) for v in self.scale_],
            "n_samples_seen": int(self._count),
        }

    @classmethod
    def from_config(cls, cfg: dict) -> Preprocessor:
        p = cls(cfg["feature_names"], cfg["log_columns"],
                [(c, float(v)) for c, v in cfg["periodic_columns"]])
        p.mean_ = np.asarray(cfg["mean"], dtype="float32")
        p.scale_ = np.asarray(cfg["scale"], dtype="float32")
        p._count = int(cfg.get("n_samples_seen", 0))
        if len(p.mean_) != p.n_features_out or len(p.scale_) != p.n_features_out:
            raise DataError(
                f"preprocessing config holds {len(p.mean_)} means for {p.n_features_out} features"
            )
        return p
