"""AutoencoderDetector: an estimator in the scikit-learn style, trained on normal rows only.

One score direction: `score_samples` is a reconstruction error (higher = more anomalous; the
guide's MSE by default, see `aedetect.scores` for the others);
`decision_function = score_samples - threshold_`; `predict` returns 1 for flagged rows.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from aedetect.errors import DataError
from aedetect.preprocessing import Preprocessor
from aedetect.scores import check_score, contributions, fit_stats, score_tf
from aedetect.thresholds import Threshold, normal_percentile

SCORE_CHUNK = 65_536
# Training steps run per call into TensorFlow: one Python round trip per step costs more than a
# step of a small network, so Keras runs this many steps inside one compiled loop.
STEPS_PER_EXECUTION = 64


def resolve_hidden_units(hidden_units, x: np.ndarray, max_code: int = 16) -> tuple[int, ...]:
    """`"auto"`: 64-32-code-32-64 with code = min(16, the number of principal components that
    hold 90% of the variance of the (preprocessed, normal) rows `x`), at least 2.

    A code much wider than the data's intrinsic dimension lets the network pass anomalies
    through unchanged, so they vanish from the residual; on the credit-card data (25 components
    for 90%) this gives 16.
    """
    if isinstance(hidden_units, str):
        if hidden_units != "auto":
            raise ValueError(f"hidden_units must be 'auto' or a list of sizes; got {hidden_units!r}")
        from sklearn.decomposition import PCA

        sample = x[np.random.default_rng(0).permutation(len(x))[:20_000]]
        ratios = PCA().fit(sample).explained_variance_ratio_
        k90 = int(np.searchsorted(np.cumsum(ratios), 0.9) + 1)
        return (64, 32, max(2, min(max_code, k90)), 32, 64)
    return tuple(int(u) for u in hidden_units)


def effective_batch_size(batch_size: int, n_rows: int, min_steps: int = 50) -> int:
    """The batch size used for `n_rows` training rows: `batch_size`, lowered (not below 32) so
    an epoch has at least `min_steps` steps. Large batches suit the 200k-row credit-card set;
    on a few thousand rows they would leave a handful of updates per epoch."""
    return int(max(1, min(batch_size, max(32, n_rows // min_steps))))


def _as_frame_or_array(X):
    if isinstance(X, (pd.DataFrame, np.ndarray)):
        return X
    return np.asarray(X)


class AutoencoderDetector:
    """Dense autoencoder anomaly detector.

    Parameters are stored as given; `fit` validates them and sets fitted attributes ending in `_`.
    The defaults are a wider ReLU network (`hidden_units="auto"`: 64-32-code-32-64, see
    `resolve_hidden_units`) scored by the Mahalanobis distance of its residuals (see
    docs/experiments.md); `hidden_units=(20, 8, 20), activation="tanh", score="mse"` is the
    guide's network.
    """

    def __init__(
        self,
        hidden_units: Sequence[int] | str = "auto",
        activation: str = "relu",
        *,
        epochs: int = 100,
        batch_size: int = 2048,
        learning_rate: float = 1e-3,
        patience: int = 5,
        validation_fraction: float = 0.1,
        noise_std: float = 0.0,
        dropout: float = 0.0,
        l2: float = 0.0,
        log_columns: Iterable[str] = (),
        periodic_columns: Iterable[tuple[str, float]] = (),
        score: str = "residual_mahalanobis",
        threshold_percentile: float = 99.9,
        shuffle_buffer: int = 262_144,
        jit_compile: bool = True,
        seed: int = 0,
        verbose: int = 0,
    ):
        self.hidden_units = hidden_units
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.noise_std = noise_std
        self.dropout = dropout
        self.l2 = l2
        self.log_columns = log_columns
        self.periodic_columns = periodic_columns
        self.score = score
        self.threshold_percentile = threshold_percentile
        self.shuffle_buffer = shuffle_buffer
        self.jit_compile = jit_compile
        self.seed = seed
        self.verbose = verbose

    # -- parameters -------------------------------------------------------------------------
    _PARAMS = ("hidden_units", "activation", "epochs", "batch_size", "learning_rate", "patience",
               "validation_fraction", "noise_std", "dropout", "l2", "log_columns",
               "periodic_columns", "score", "threshold_percentile", "shuffle_buffer", "jit_compile",
               "seed", "verbose")

    def get_params(self) -> dict:
        params = {k: getattr(self, k) for k in self._PARAMS}
        if params["hidden_units"] != "auto":
            params["hidden_units"] = [int(u) for u in params["hidden_units"]]
        params["log_columns"] = list(params["log_columns"])
        params["periodic_columns"] = [[c, float(p)] for c, p in params["periodic_columns"]]
        return params

    def set_params(self, **params) -> AutoencoderDetector:
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ValueError(f"unknown parameter {k!r}; valid: {', '.join(self._PARAMS)}")
            setattr(self, k, v)
        return self

    def _validate_params(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("patience", self.patience >= 0, ">= 0"),
            ("validation_fraction", 0 < self.validation_fraction < 1, "in (0, 1)"),
            ("noise_std", self.noise_std >= 0, ">= 0"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
            ("l2", self.l2 >= 0, ">= 0"),
            ("threshold_percentile", 0 < self.threshold_percentile < 100, "in (0, 100)"),
        ]
        check_score(self.score)
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} must be {allowed}; got {getattr(self, name)!r}")

    # -- input handling -----------------------------------------------------------------------
    def _matrix(self, X, *, fitting: bool = False) -> np.ndarray:
        X = _as_frame_or_array(X)
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            if fitting:
                self.feature_names_in_ = names
            else:
                missing = [c for c in self.feature_names_in_ if c not in names]
                if missing:
                    raise DataError(
                        f"X is missing column(s) {missing}; the detector was fitted with "
                        f"{self.n_features_in_} columns {self.feature_names_in_}"
                    )
                X = X[self.feature_names_in_]
            try:
                arr = X.to_numpy(dtype="float64")
            except (TypeError, ValueError):
                bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
                raise DataError(f"X has non-numeric column(s) {bad}") from None
        else:
            arr = np.asarray(X, dtype="float64")
            if arr.ndim != 2:
                raise DataError(f"X must be 2-dimensional (rows x features); got shape {arr.shape}")
            if fitting:
                self.feature_names_in_ = [f"x{i}" for i in range(arr.shape[1])]
            elif arr.shape[1] != self.n_features_in_:
                raise DataError(
                    f"X has {arr.shape[1]} features, but the detector was fitted with "
                    f"{self.n_features_in_}"
                )
        if len(arr) == 0:
            raise DataError("X has no rows")
        finite = np.isfinite(arr)
        if not finite.all():
            r, c = np.argwhere(~finite)[0]
            raise DataError(
                f"X column {self.feature_names_in_[c]!r}, row {r + 1}: value {float(arr[r, c])!r} is "
                "not a finite number"
            )
        if fitting:
            self.n_features_in_ = arr.shape[1]
        return arr

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(
                "This AutoencoderDetector is not fitted yet; call fit() or load a saved one"
            )

    # -- training ---------------------------------------------------------------------------
    def fit(self, X, validation_data=None, callbacks=(), feature_names=None) -> AutoencoderDetector:
        """Train on normal rows `X` (DataFrame, array, or an unbatched tf.data.Dataset of rows).

        `validation_data`: normal rows for early stopping and the label-free threshold. When
        omitted, `validation_fraction` of `X` is held out (seeded). A Dataset `X` needs it, and
        `feature_names` names its columns.
        """
        import keras
        import tensorflow as tf

        from aedetect.data.tfdata import array_dataset, stream_dataset
        from aedetect.network import build_autoencoder

        self._validate_params()
        # Seeds fix the weights, the split-off validation rows and the shuffling order. Op
        # determinism is not forced: it would disable XLA, and on CPU the dense kernels give the
        # same result for the same seed and thread count (a test checks this).
        keras.utils.set_random_seed(self.seed)

        streaming = isinstance(X, tf.data.Dataset)
        if streaming:
            if validation_data is None:
                raise ValueError("fit() on a tf.data.Dataset needs validation_data")
            self.n_features_in_ = int(X.element_spec.shape[-1])
            self.feature_names_in_ = list(feature_names) if feature_names else [
                f"x{i}" for i in range(self.n_features_in_)]
            self.preprocessor_ = self._new_preprocessor()
            digest, n_train = hashlib.sha256(), 0
            for chunk in X.batch(65_536):
                block = chunk.numpy()
                digest.update(np.ascontiguousarray(block, dtype="float64").tobytes())
                n_train += len(block)
                self.preprocessor_.partial_fit(block)
            self.batch_size_ = effective_batch_size(self.batch_size, n_train)
            train_ds = stream_dataset(X, self.preprocessor_, self.batch_size_, self.seed,
                                      self.shuffle_buffer)
            x_val = self.preprocessor_.transform(
                np.concatenate([b.numpy() for b in validation_data.batch(65_536)]))
        else:
            x = self._matrix(X, fitting=True)
            if validation_data is None:
                rng = np.random.default_rng(self.seed)
                order = rng.permutation(len(x))
                n_val = max(1, int(round(len(x) * self.validation_fraction)))
                val_raw, x = x[order[:n_val]], x[np.sort(order[n_val:])]
            else:
                val_raw = self._matrix(validation_data)
            digest, n_train = hashlib.sha256(np.ascontiguousarray(x).tobytes()), len(x)
            self.preprocessor_ = self._new_preprocessor().fit(x)
            self.batch_size_ = effective_batch_size(self.batch_size, n_train)
            train_ds = array_dataset(self.preprocessor_.transform(x), self.batch_size_, self.seed)
            x_val = self.preprocessor_.transform(val_raw)
        val_ds = tf.data.Dataset.from_tensor_slices((x_val, x_val)).batch(8192)

        self.hidden_units_ = resolve_hidden_units(self.hidden_units, x_val)
        model = build_autoencoder(self.preprocessor_.n_features_out, self.hidden_units_,
                                  self.activation, noise_std=self.noise_std,
                                  dropout=self.dropout, l2=self.l2)
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse",
                      jit_compile=bool(self.jit_compile), steps_per_execution=STEPS_PER_EXECUTION)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience,
                                             restore_best_weights=True)
        history = model.fit(train_ds, validation_data=val_ds, epochs=int(self.epochs),
                            callbacks=[stop, *callbacks], verbose=self.verbose,
                            shuffle=False)  # the dataset shuffles itself, seeded
        self.model_ = model
        self._score_fn = None
        self.n_train_, self.n_validation_ = n_train, len(x_val)
        self.training_fingerprint_ = "sha256:" + digest.hexdigest()
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        val_loss = self.history_.get("val_loss", [])
        self.n_epochs_ = len(val_loss)
        self.best_epoch_ = int(np.argmin(val_loss)) + 1 if val_loss else self.n_epochs_
        self.score_stats_ = fit_stats(self.score, self._residuals(x_val))
        self.validation_scores_ = self._contributions(x_val).sum(axis=1)
        self.threshold = Threshold(
            "normal_percentile",
            normal_percentile(self.validation_scores_, self.threshold_percentile),
            {"q": self.threshold_percentile},
            f"validation normals ({len(self.validation_scores_)} rows)",
        )
        return self

    def _new_preprocessor(self) -> Preprocessor:
        return Preprocessor(self.feature_names_in_, self.log_columns, self.periodic_columns)

    # -- scoring ----------------------------------------------------------------------------
    def _residuals(self, x: np.ndarray) -> np.ndarray:
        """reconstruction - x for preprocessed rows, computed in chunks by a traced function."""
        import tensorflow as tf

        if getattr(self, "_score_fn", None) is None:
            model = self.model_
            spec = tf.TensorSpec([None, self.preprocessor_.n_features_out], tf.float32)

            @tf.function(input_signature=[spec])  # one trace for every chunk size
            def residuals(batch):
                return model(batch, training=False) - batch

            self._score_fn = residuals
        out = np.empty_like(x)
        for start in range(0, len(x), SCORE_CHUNK):
            part = x[start:start + SCORE_CHUNK]
            out[start:start + SCORE_CHUNK] = self._score_fn(tf.constant(part)).numpy()
        return out

    def _contributions(self, x_pre: np.ndarray) -> np.ndarray:
        return contributions(self.score, self.score_stats_, self._residuals(x_pre))

    def _preprocess(self, X) -> np.ndarray:
        self._check_fitted()
        return self.preprocessor_.transform(self._matrix(X))

    def feature_errors(self, X) -> np.ndarray:
        """Squared reconstruction error of each preprocessed feature (`feature_names_out_`)."""
        return np.square(self._residuals(self._preprocess(X)))

    def feature_contributions(self, X) -> np.ndarray:
        """Each preprocessed feature's share of the score: rows sum to `score_samples(X)`."""
        return self._contributions(self._preprocess(X))

    def anomaly_score(self, X) -> np.ndarray:
        """Anomaly score of each row (see `aedetect.scores`): higher = more anomalous.

        The fraud view used by the CLI, the service and the reports."""
        return self.feature_contributions(X).sum(axis=1)

    def score_samples(self, X) -> np.ndarray:
        """Anomaly score of each row (see `aedetect.scores`): higher = more anomalous."""
        return self.anomaly_score(X)

    def score_with_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Scores and per-feature contributions from one pass through the network."""
        c = self.feature_contributions(X)
        return c.sum(axis=1), c

    def score_and_errors(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Scores and squared reconstruction errors from one pass through the network."""
        r = self._residuals(self._preprocess(X))
        return contributions(self.score, self.score_stats_, r).sum(axis=1), np.square(r)

    def score_tf(self, x_preprocessed):
        """Per-row score from preprocessed features, in TensorFlow ops (used by the SavedModel
        export, so the exported graph computes the same score as `score_samples`)."""
        import tensorflow as tf

        self._check_fitted()
        x = tf.cast(x_preprocessed, tf.float32)
        return score_tf(self.score, self.score_stats_, self.model_(x, training=False) - x)

    def decision_function(self, X) -> np.ndarray:
        return self.score_samples(X) - self.threshold_

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype("int8")

    @property
    def feature_names_out_(self) -> list[str]:
        self._check_fitted()
        return self.preprocessor_.output_names

    # -- threshold --------------------------------------------------------------------------
    @property
    def threshold(self) -> Threshold:
        self._check_fitted()
        return self._threshold

    @threshold.setter
    def threshold(self, value: Threshold | float) -> None:
        if not isinstance(value, Threshold):
            value = Threshold("fixed", float(value), {"value": float(value)}, "given")
        self._threshold = value

    @property
    def threshold_(self) -> float:
        return self.threshold.value

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, metadata: dict | None = None, *, overwrite: bool = False):
        """Write an artifact folder (model.keras + manifest.json); see `aedetect.artifact`."""
        from aedetect.artifact import save_detector

        self._check_fitted()
        return save_detector(self, path, metadata=metadata, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AutoencoderDetector:
        from aedetect.artifact import load_detector

        return load_detector(path)
