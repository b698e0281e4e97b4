"""AutoencoderDetector: a scikit-learn outlier detector trained on normal rows only.

Two views of one score, each with its own name:

- the fraud view, `anomaly_score(X)`: higher = more anomalous (a reconstruction error, see
  `aedetect.model.scores`); rows with `anomaly_score > threshold_` are flagged. The CLI, the service and
  the reports use it.
- scikit-learn's outlier convention (IsolationForest, LocalOutlierFactor): `score_samples(X)` =
  `-anomaly_score(X)` (lower = more abnormal), `offset_ = -threshold_`, `decision_function(X) =
  score_samples(X) - offset_` (< 0 means outlier), `predict(X)` = -1 for outliers, +1 for inliers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from aedetect.data.creditcard import numbers_model_schema
from aedetect.data.schema import DatasetSchema
from aedetect.errors import DataError
from aedetect.model.defaults import (
    auto_architecture,
    auto_batch_size,
    auto_epochs,
    auto_jit,
    passes_per_epoch,
)
from aedetect.model.preprocessing import Preprocessor
from aedetect.model.scorer import OutlierConventions
from aedetect.model.scores import (
    SCORES,
    contributions,
    fit_stats,
    fold_members,
    score_tf,
    stats_from_config,
    stats_to_config,
)
from aedetect.model.thresholds import HasThreshold, Threshold, normal_percentile

if TYPE_CHECKING:  # the model folder's type only: importing it builds pydantic models
    from aedetect.store.folder import ModelFolder

SCORE_CHUNK = 65_536
ROBUST_WARMUP = 1  # epochs on every row before a robust fit trims (see `robust`)
ACTIVATIONS = {"relu", "tanh", "elu", "selu", "gelu", "silu", "sigmoid", "linear", "leaky_relu"}


def resolve_hidden_units(hidden_units, x: np.ndarray) -> tuple[int, ...]:
    """`"auto"`: `aedetect.model.defaults.auto_architecture` on the (preprocessed, normal) rows `x`;
    otherwise the given sizes."""
    if isinstance(hidden_units, str):
        return auto_architecture(len(x), x.shape[1], x)
    return tuple(int(u) for u in hidden_units)


def effective_batch_size(batch_size, n_rows: int, min_steps: int = 50) -> int:
    """The batch size used for `n_rows` training rows. `"auto"`: `auto_batch_size`. A number is
    lowered (not below 32) so an epoch has at least `min_steps` steps: large batches suit the
    200k-row credit-card set; on a few thousand rows they would leave a handful of updates."""
    if batch_size == "auto":
        return auto_batch_size(n_rows)
    return int(max(1, min(batch_size, max(32, n_rows // min_steps))))


def _row_bytes(x) -> bytes:
    """The training rows as bytes, for the data fingerprint (tables of any column type too)."""
    if isinstance(x, pd.DataFrame):
        return pd.util.hash_pandas_object(x, index=False).to_numpy().tobytes()
    return np.ascontiguousarray(x).tobytes()


def check_hidden_units(value) -> None:
    if isinstance(value, str):
        return
    if len(value) == 0 or not all(isinstance(u, Integral) and not isinstance(u, bool) and u >= 1
                                  for u in value):
        raise ValueError(f"The 'hidden_units' parameter of AutoencoderDetector must be 'auto' or "
                         f"a non-empty sequence of positive integers. Got {value!r} instead.")


def _json_params(params: dict) -> dict:
    """Parameters as JSON values (tuples become lists), for the manifest."""
    out = dict(params)
    if not isinstance(out["hidden_units"], str):
        out["hidden_units"] = [int(u) for u in out["hidden_units"]]
    out["log_columns"] = [str(c) for c in out["log_columns"]]
    out["periodic_columns"] = [[str(c), float(p)] for c, p in out["periodic_columns"]]
    if out.get("schema") is not None and not isinstance(out["schema"], dict):
        out["schema"] = out["schema"].model_dump(mode="json")
    return out


def _sequence_types(params: dict) -> dict:
    """Which sequence parameters were tuples and which lists, so a loaded detector's
    `get_params()` returns them exactly as given (JSON keeps only lists)."""
    return {k: type(v).__name__ for k, v in params.items() if isinstance(v, (list, tuple))}


def _params_from_json(params: dict, types: dict | None = None) -> dict:
    out = dict(params)
    if "score" in out and "score_type" not in out:  # folders written before the rename
        out["score_type"] = out.pop("score")
    if out.get("schema") is not None:
        out["schema"] = DatasetSchema.model_validate(out["schema"])
    if not isinstance(out.get("hidden_units", "auto"), str):
        out["hidden_units"] = tuple(int(u) for u in out["hidden_units"])
    out["log_columns"] = tuple(out.get("log_columns", ()))
    out["periodic_columns"] = tuple((c, float(p)) for c, p in out.get("periodic_columns", ()))
    for key, kind in (types or {}).items():
        if key in out and kind == "list" and isinstance(out[key], tuple):
            out[key] = list(out[key])
    return out


class AutoencoderDetector(HasThreshold, OutlierMixin, OutlierConventions, BaseEstimator):
    """Dense autoencoder anomaly detector, trained on normal rows only.

    The network learns to reconstruct normal rows; a row it reconstructs badly is anomalous.
    `fit` standardises the columns (after `log1p` of `log_columns` and a sin/cos encoding of
    `periodic_columns`), trains with early stopping on held-out normal rows, fits the score's
    statistics on those rows, and sets the threshold at their `threshold_percentile`-th
    percentile (a label-free false-positive budget).

    The defaults (a ReLU network sized to the data, epochs and batch from the row count, see
    `aedetect.model.defaults`, scored by the Mahalanobis distance of its residuals) come from the
    experiments in docs/experiments.md. The guide's network is
    ``AutoencoderDetector(hidden_units=(20, 8, 20), activation="tanh", score_type="mse",
    epochs=5, batch_size=256)``.

    Parameters
    ----------
    hidden_units : "auto" or sequence of int, default="auto"
        Sizes of the hidden layers, bottleneck included, e.g. ``(20, 8, 20)``. ``"auto"``:
        w-w/2-code-w/2-w with w twice the (preprocessed) features as a power of two between 16
        and 128, and the code as wide as the number of principal components that hold 90% of
        the training rows' variance, between 2 and 16 (`aedetect.model.defaults`).
    activation : str, default="relu"
        Activation of the hidden layers (a Keras activation name).
    epochs : int or "auto", default="auto"
        Most training epochs; early stopping usually ends sooner. ``"auto"``: n_rows / 1,000
        between 10 and 100, and an epoch is at least 50 updates (small sets are passed over
        several times per epoch).
    batch_size : int or "auto", default="auto"
        Rows per gradient step. ``"auto"``: n_rows / 100 as a power of two between 32 and
        2,048. A number is lowered (not below 32) so an epoch has at least 50 steps.
    learning_rate : float, default=1e-3
        Adam's learning rate.
    patience : int, default=5
        Epochs without improvement of the validation loss before training stops; the best
        epoch's weights are kept.
    validation_fraction : float, default=0.1
        Share of `X` held out (seeded) for early stopping, the score's statistics and the
        threshold, when `fit` gets no `validation_data`.
    noise_std : float, default=0.0
        Standard deviation of Gaussian noise added to the inputs while training (denoising).
    dropout : float, default=0.0
        Dropout rate after each hidden layer but the last.
    l2 : float, default=0.0
        L2 weight decay on the dense kernels.
    members : int, default=3
        Networks in the ensemble. Each member is the same network from its own initial weights,
        trained on the same batches; the score reads every member's residuals at once (see
        `aedetect.model.scores`), which evens out how much one set of initial weights matters.
        The members live in one chain of dense layers (`aedetect.model.network`), so the model
        folder, the runtimes and the exports are those of one network, `members` times wider.
    robust : float, default=0.0
        Robust fit, for training rows that may hold unlabelled anomalies: the share q of rows
        trimmed. After `ROBUST_WARMUP` epochs on every row, the training rows whose
        reconstruction error is above the (1 - q) quantile of the training rows' errors
        (refreshed after each epoch) are left out of the gradient; the validation rows' highest
        q share is left out of the early-stopping loss and of the score's statistics (the
        threshold still reads every validation row). ``0``: every row counts, as before. See
        docs/experiments.md for what it gains and costs.
    log_columns : sequence of str, default=()
        Heavy-tailed non-negative columns (e.g. ``"Amount"``) that get ``log1p`` first.
    periodic_columns : sequence of (str, float), default=()
        Columns of a clock and their period, e.g. ``(("Time", 86400.0),)``: encoded as the sine
        and cosine of their phase, so the network sees the hour of day.
    schema : DatasetSchema or dict, default=None
        The table's columns with their roles and types (see `aedetect.data.schema`), e.g.
        `aedetect.data.creditcard.CREDITCARD`; stored in the model folder. When given, `X` is
        a table whose feature columns may hold categories, datetimes and missing values, each
        read by its type (see `aedetect.model.preprocessing`), and other columns (the label,
        ids) are left out; `log_columns` and `periodic_columns` are then ignored (the schema
        says which columns get them). Without it, `X` holds numbers only.
    score_type : {"residual_mahalanobis", "feature_normalized", "mse"}, default="residual_mahalanobis"
        How residuals become a score (see `aedetect.model.scores`); ``"mse"`` is the guide's.
    threshold_percentile : float, default=99.9
        The threshold is this percentile of the validation normals' scores: about
        ``100 - threshold_percentile`` percent of normal rows get flagged.
    shuffle_buffer : int, default=262144
        Shuffle buffer of the streaming input path (`X` given as a `tf.data.Dataset`).
    jit_compile : bool or "auto", default="auto"
        Compile the training step with XLA. ``"auto"``: from 50,000 training rows, where the
        compile time pays back.
    seed : int, default=0
        Seed of the weights, the held-out rows and the shuffling. Training on CPU is
        reproducible for a given seed and thread count.
    verbose : int, default=0
        Keras training output (0 silent, 1 progress bar, 2 one line per epoch).

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in `fit`.
    feature_names_in_ : ndarray of str
        Column names seen in `fit`; only defined when `X` had string column names.
    model_ : keras.Model
        The trained autoencoder (on preprocessed columns).
    preprocessor_ : Preprocessor
        The fitted column transforms.
    hidden_units_ : tuple of int
        The hidden layer sizes used (``"auto"`` resolved), of one member.
    members_ : int
        Networks in the ensemble.
    batch_size_ : int
        The batch size used.
    score_stats_ : dict of ndarray
        Statistics of the validation normals' residuals used by the score.
    threshold_ : float
        Rows with ``anomaly_score > threshold_`` are flagged. `threshold` holds the rule, its
        parameters and where it came from (see `aedetect.model.thresholds.Threshold`).
    offset_ : float
        ``-threshold_``, scikit-learn's offset: ``decision_function = score_samples - offset_``.
    validation_scores_ : ndarray
        Anomaly scores of the validation normals (empty after loading from a folder).
    n_train_, n_validation_ : int
        Rows trained on and held out.
    n_epochs_, best_epoch_ : int
        Epochs run, and the epoch whose weights were kept.
    history_ : dict of list of float
        Training and validation loss per epoch.
    training_fingerprint_ : str
        sha256 of the training rows.

    Examples
    --------
    >>> det = AutoencoderDetector(hidden_units=(20, 8, 20), epochs=20).fit(normal_rows)
    >>> flags = det.predict(new_rows) == -1          # scikit-learn convention
    >>> scores = det.anomaly_score(new_rows)         # higher = more anomalous
    """

    _parameter_constraints: dict = {
        "hidden_units": [StrOptions({"auto"}), list, tuple],
        "activation": [StrOptions(ACTIVATIONS)],
        "epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "noise_std": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "l2": [Interval(Real, 0, None, closed="left")],
        "members": [Interval(Integral, 1, 16, closed="both")],
        "robust": [Interval(Real, 0, 0.5, closed="left")],
        "log_columns": [list, tuple],
        "periodic_columns": [list, tuple],
        "schema": [dict, DatasetSchema, None],
        "score_type": [StrOptions(set(SCORES))],
        "threshold_percentile": [Interval(Real, 0, 100, closed="neither")],
        "shuffle_buffer": [Interval(Integral, 1, None, closed="left")],
        "jit_compile": ["boolean", StrOptions({"auto"})],
        "seed": [Interval(Integral, 0, 2**32 - 1, closed="both")],  # NumPy and Keras seeds are 32-bit
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_units="auto",
        activation="relu",
        *,
        epochs="auto",
        batch_size="auto",
        learning_rate=1e-3,
        patience=5,
        validation_fraction=0.1,
        noise_std=0.0,
        dropout=0.0,
        l2=0.0,
        members=3,
        robust=0.0,
        log_columns=(),
        periodic_columns=(),
        schema=None,
        score_type="residual_mahalanobis",
        threshold_percentile=99.9,
        shuffle_buffer=262_144,
        jit_compile="auto",
        seed=0,
        verbose=0,
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
        self.members = members
        self.robust = robust
        self.log_columns = log_columns
        self.periodic_columns = periodic_columns
        self.schema = schema
        self.score_type = score_type
        self.threshold_percentile = threshold_percentile
        self.shuffle_buffer = shuffle_buffer
        self.jit_compile = jit_compile
        self.seed = seed
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # -- input handling -----------------------------------------------------------------------
    @property
    def dataset_schema(self) -> DatasetSchema:
        """The table this detector reads: `schema` (a dict is read as one) or, once fitted, a
        numbers-only detector's columns as it reads them (`log_columns`, `periodic_columns`;
        see `aedetect.data.creditcard.numbers_model_schema` for their label and time)."""
        if self.schema is not None:
            return DatasetSchema.model_validate(self.schema)
        check_is_fitted(self)
        pre = self.preprocessor_
        return numbers_model_schema(pre.feature_names, pre.log_columns, pre.periodic_columns)

    def _validate_table(self, X, *, reset: bool) -> pd.DataFrame:
        """With a dataset schema: the schema's feature columns of a table, as given (text,
        datetimes, missing values); the preprocessor checks each value by its column's type."""
        from aedetect.data.history import add_history, ensure_history
        from aedetect.data.schema import feature_table

        schema = self.dataset_schema
        names = schema.features
        if reset:
            self.feature_names_in_ = np.asarray(names, dtype=object)
            self.n_features_in_ = len(names)
            if schema.history is not None and isinstance(X, pd.DataFrame) and \
                    not all(c in X.columns for c in schema.history_features):
                X, self.history_state_ = add_history(X, schema)  # from these rows alone
        else:
            X = ensure_history(X, schema, getattr(self, "history_state_", None))
        return feature_table(X, names)

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """X as a float64 matrix: scikit-learn's checks (feature count and names), then every
        value finite, reported with its column and row. With a dataset schema, a table."""
        if self.schema is not None:
            return self._validate_table(X, reset=reset)
        if isinstance(X, pd.DataFrame):
            bad = [c for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c])
                                                or pd.api.types.is_bool_dtype(X[c]))]
            if bad:
                raise DataError(f"X has non-numeric column(s) {bad}; every column must be a number")
        try:
            arr = validate_data(self, X, reset=reset, dtype="float64", ensure_all_finite=False,
                                ensure_min_samples=1)
        except DataError:
            raise
        except ValueError as exc:
            raise DataError(str(exc)) from None
        finite = np.isfinite(arr)
        if not finite.all():
            r, c = np.argwhere(~finite)[0]
            v = float(arr[r, c])
            text = "NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf")
            raise DataError(f"X column {self._columns()[c]!r}, row {r + 1}: value {text} is not a "
                            "finite number")
        return arr

    def _columns(self) -> list[str]:
        """Column names: the DataFrame's, or x0, x1, ... for arrays."""
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    # -- training ---------------------------------------------------------------------------
    def fit(self, X, y=None, *, validation_data=None, callbacks=(), feature_names=None,
            warm_start: bool = False):
        """Train on normal rows `X`.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features), or tf.data.Dataset
            Normal rows only. An unbatched `tf.data.Dataset` of rows streams from disk (it needs
            `validation_data`; `feature_names` names its columns).
        y : ignored
            Present for the scikit-learn API. Labels are not used: pass only normal rows.
        validation_data : array-like, DataFrame or tf.data.Dataset, default=None
            Normal rows for early stopping, the score's statistics and the threshold; when
            omitted, `validation_fraction` of `X` is held out (seeded).
        callbacks : sequence of keras.callbacks.Callback, default=()
            Extra Keras callbacks (progress bars, timers). Training runs in
            `aedetect.model.fitloop`, not `model.fit`: callbacks get the train and epoch hooks (epoch
            logs `loss` and `val_loss`), the batch hooks if they define them, and may set
            `model.stop_training`.
        feature_names : sequence of str, default=None
            Column names of a `tf.data.Dataset` `X`.
        warm_start : bool, default=False
            Continue from this fitted detector (rows in memory, the same columns): its
            preprocessing and network are kept and the weights keep training on `X`; the score
            statistics and the threshold are refitted on the new validation normals.

        Returns
        -------
        self : AutoencoderDetector
        """
        import keras
        import tensorflow as tf

        from aedetect.data.tfdata import stream_dataset
        from aedetect.model.fitloop import (
            STEPS_PER_CALL,
            array_epochs,
            even_steps_per_call,
            run_epochs,
            train_step,
            trim_schedule,
            trimmed_mean,
        )
        from aedetect.model.network import build_autoencoder

        self._validate_params()
        check_hidden_units(self.hidden_units)
        # Seeds fix the weights, the split-off validation rows and the shuffling order. Op
        # determinism is not forced: it would disable XLA, and on CPU the dense kernels give the
        # same result for the same seed and thread count (a test checks this).
        keras.utils.set_random_seed(self.seed)

        if warm_start:
            check_is_fitted(self)
            if isinstance(X, tf.data.Dataset):
                raise ValueError("warm_start needs rows in memory (a DataFrame or an array)")
        if isinstance(X, tf.data.Dataset):
            if validation_data is None:
                raise ValueError("fit() on a tf.data.Dataset needs validation_data")
            self.n_features_in_ = int(X.element_spec.shape[-1])
            if feature_names:
                self.feature_names_in_ = np.asarray(list(feature_names), dtype=object)
            self.preprocessor_ = self.new_preprocessor()
            digest, n_train = hashlib.sha256(), 0
            for chunk in X.batch(65_536):
                block = chunk.numpy()
                digest.update(np.ascontiguousarray(block, dtype="float64").tobytes())
                n_train += len(block)
                self.preprocessor_.partial_fit(block)
            self.batch_size_ = effective_batch_size(self.batch_size, n_train)
            passes = 1  # a stream is large: one pass is many updates
            train_ds = stream_dataset(X, self.preprocessor_, self.batch_size_, self.seed,
                                      self.shuffle_buffer)
            # One batch per call; the last batch of a pass may be smaller.
            epoch_batches, step_rows = lambda _: (b[tf.newaxis] for b in train_ds), None
            steps = -(-n_train // self.batch_size_)
            x_val = self.preprocessor_.transform(
                np.concatenate([b.numpy() for b in validation_data.batch(65_536)]))
            x_shape = x_val
        else:
            x = self._validate_X(X, reset=not warm_start)
            if validation_data is None:
                if len(x) < 2:
                    raise DataError(f"fit needs at least 2 rows, to hold some out for validation; "
                                    f"got {len(x)} sample")
                order = np.random.default_rng(self.seed).permutation(len(x))
                n_val = min(len(x) - 1, max(2, int(round(len(x) * self.validation_fraction))))
                take = x.iloc.__getitem__ if isinstance(x, pd.DataFrame) else x.__getitem__
                val_raw, x = take(order[:n_val]), take(np.sort(order[n_val:]))
            else:
                val_raw = self._validate_X(validation_data, reset=False)
            digest, n_train = hashlib.sha256(_row_bytes(x)), len(x)
            if not warm_start:
                self.preprocessor_ = self.new_preprocessor().fit(x)
            self.batch_size_ = effective_batch_size(self.batch_size, n_train)
            x_pre = self.preprocessor_.transform(x)
            passes = passes_per_epoch(n_train, self.batch_size_) if self.epochs == "auto" else 1
            epoch_batches = array_epochs(x_pre, self.batch_size_, passes, self.seed)
            step_rows = min(self.batch_size_, n_train)  # every batch is full: one trace
            steps = passes * -(-n_train // step_rows)
            x_val = self.preprocessor_.transform(val_raw)
            x_shape = x_pre

        if warm_start:
            model = self.model_
        else:
            self.hidden_units_ = resolve_hidden_units(self.hidden_units, x_shape)
            model = build_autoencoder(self.preprocessor_.n_features_out, self.hidden_units_,
                                      self.activation, noise_std=self.noise_std,
                                      dropout=self.dropout, l2=self.l2,
                                      members=int(self.members), seed=self.seed)
        self.epochs_ = auto_epochs(n_train) if self.epochs == "auto" else int(self.epochs)
        self.passes_per_epoch_ = passes
        self.jit_compile_ = (auto_jit(n_train) if self.jit_compile == "auto"
                             else bool(self.jit_compile))
        self._set_model(model)
        # Our own loop (aedetect.model.fitloop), not model.fit: one traced function running many
        # steps per call, and no tf.data for rows in memory, which removes most of a small
        # fit's fixed cost. The validation loss comes from the residual function that scoring
        # uses anyway.
        share = float(self.robust)
        if share > 0:  # trimmed: the cut comes from the training rows (a stream's: validation's)
            trim = tf.Variable(np.inf, dtype=tf.float32, trainable=False)
            callbacks = [trim_schedule(trim, lambda: self._row_errors(x_shape), share,
                                       ROBUST_WARMUP), *callbacks]
            val_loss = lambda: trimmed_mean(self._row_errors(x_val), share)  # noqa: E731
        else:
            trim, val_loss = None, lambda: np.mean(np.square(self._residuals(x_val)))
        history = run_epochs(
            model, train_step(model, self.learning_rate, self.jit_compile_, step_rows, trim),
            epoch_batches, val_loss,
            epochs=self.epochs_, patience=self.patience,
            steps_per_call=even_steps_per_call(steps) if self.jit_compile_ else STEPS_PER_CALL,
            callbacks=callbacks,
            verbose=self.verbose, steps_per_epoch=steps)
        self.n_train_, self.n_validation_ = n_train, len(x_val)
        self.training_fingerprint_ = "sha256:" + digest.hexdigest()
        self.history_ = history
        val_loss = self.history_.get("val_loss", [])
        self.n_epochs_ = len(val_loss)
        self.best_epoch_ = int(np.argmin(val_loss)) + 1 if val_loss else self.n_epochs_
        r_val = self._residuals(x_val)
        r_stats = r_val
        if share > 0:  # the statistics from the validation rows less their worst reconstructed
            err = np.mean(np.square(r_val), axis=1)
            keep = max(2, len(err) - int(np.ceil(share * len(err))))
            r_stats = r_val[np.sort(np.argsort(err, kind="stable")[:keep])]
        # Residual statistics need at least 2 rows; a tiny validation set borrows training rows.
        if len(r_stats) < 2:
            r_stats = np.concatenate([r_stats, self._residuals(x_shape[:2])])
        self.score_stats_ = fit_stats(self.score_type, r_stats, self.members_)
        self.validation_scores_ = contributions(self.score_type, self.score_stats_, r_val).sum(axis=1)
        self.threshold = Threshold(
            "normal_percentile",
            normal_percentile(self.validation_scores_, self.threshold_percentile),
            {"q": self.threshold_percentile},
            f"validation normals ({len(self.validation_scores_)} rows)",
        )
        return self

    def new_preprocessor(self) -> Preprocessor:
        """The unfitted preprocessing this detector's schema (or columns) asks for."""
        if self.schema is not None:
            return Preprocessor.from_schema(self.dataset_schema)
        columns = self._columns()
        named = [*self.log_columns, *(c for c, _ in self.periodic_columns)]
        unknown = [c for c in named if str(c) not in columns]
        if unknown:  # a typo would otherwise leave a column untransformed without a word
            raise DataError(f"log_columns/periodic_columns name {', '.join(map(repr, unknown))}, "
                            f"not column(s) of X; its columns are {', '.join(map(repr, columns))}")
        return Preprocessor(columns, self.log_columns, self.periodic_columns)

    def _set_model(self, model) -> None:
        """Keep the network and its traced scoring function (built once, so scoring never
        changes the estimator's state)."""
        import keras
        import tensorflow as tf

        spec = tf.TensorSpec([None, self.preprocessor_.n_features_out], tf.float32)
        from aedetect.model.network import n_members
        from aedetect.store.weights import INFERENCE_IDENTITY

        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        other = [layer.name for layer in model.layers
                 if layer not in dense and type(layer).__name__ not in INFERENCE_IDENTITY]
        if other:
            raise ValueError(f"the network has layers other than dense ones: {other}")

        self.model_ = model
        self.members_ = n_members(int(model.output_shape[-1]), self.preprocessor_.n_features_out)
        self._dense = dense
        # One trace for every chunk size; no control flow, so no AutoGraph conversion.
        self._residual_fn = tf.function(self.residuals_tf, input_signature=[spec], autograph=False)

    def residuals_tf(self, x_preprocessed):
        """reconstruction - x (float64) of preprocessed float32 rows, in TensorFlow ops.

        The network's inference pass (its dense layers; noise and dropout act only in training)
        in float64: in float32 a row's result depends on how many rows share its matrix product
        (by about 1e-7), so a row would not score exactly the same alone as in a batch; and the
        residual of a well-reconstructed row loses most of its float32 digits to cancellation.
        The scoring path, the SavedModel export and the NumPy runtime all compute it this way.
        An ensemble's residuals are each member's, member after member (`members_` x features)."""
        return self.network_tf(x_preprocessed)[0]

    def network_tf(self, x_preprocessed):
        """(`residuals_tf`, the code layer's activations) in one pass of the network: the code
        in float64 from the float32 weights, as `store.weights.bottleneck` computes it (None
        for a network without a hidden layer)."""
        import tensorflow as tf

        from aedetect.store.weights import code_layer

        def f64(value):
            return tf.cast(value, tf.float64)

        stop = code_layer([int(layer.kernel.shape[1]) for layer in self._dense])
        x = h = f64(x_preprocessed)
        code = None
        for i, layer in enumerate(self._dense):
            h = layer.activation(tf.matmul(h, f64(layer.kernel)) + f64(layer.bias))
            if i == stop:
                code = h
        return h - (x if self.members_ == 1 else tf.tile(x, [1, self.members_])), code

    # -- scoring ----------------------------------------------------------------------------
    def _residuals(self, x: np.ndarray) -> np.ndarray:
        """reconstruction - x (float64) for preprocessed rows, in chunks by a traced function
        (an ensemble's: rows x (members x features))."""
        import tensorflow as tf

        out = np.empty((len(x), x.shape[1] * self.members_), dtype="float64")
        for start in range(0, len(x), SCORE_CHUNK):
            part = x[start:start + SCORE_CHUNK]
            out[start:start + SCORE_CHUNK] = self._residual_fn(tf.constant(part)).numpy()
        return out

    def _row_errors(self, x: np.ndarray) -> np.ndarray:
        """Each preprocessed row's mean squared reconstruction error."""
        return np.mean(np.square(self._residuals(x)), axis=1)

    def preprocess(self, X) -> np.ndarray:
        """`X` checked against the fitted columns and preprocessed: what the network sees."""
        check_is_fitted(self)
        return self.preprocessor_.transform(self._validate_X(X, reset=False))

    def feature_errors(self, X) -> np.ndarray:
        """Squared reconstruction error of each preprocessed feature (`feature_names_out_`; an
        ensemble's: the mean over its members)."""
        return fold_members(np.square(self._residuals(self.preprocess(X))),
                            self.preprocessor_.n_features_out, "mean")

    def feature_contributions(self, X) -> np.ndarray:
        """Each preprocessed feature's share of the anomaly score: rows sum to `anomaly_score(X)`."""
        r = self._residuals(self.preprocess(X))
        return self._contributions(r)

    def _contributions(self, r: np.ndarray) -> np.ndarray:
        """Per-feature contributions (float64) of residuals `r`."""
        return contributions(self.score_type, self.score_stats_, r,
                             self.preprocessor_.n_features_out).astype("float64")

    def anomaly_score(self, X) -> np.ndarray:
        """Anomaly score of each row: higher = more anomalous (the fraud view).

        Rows with a score above `threshold_` are flagged. See `aedetect.model.scores` for how
        residuals become a score.
        """
        return self.feature_contributions(X).sum(axis=1)

    def score_with_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly scores and per-feature contributions from one pass through the network."""
        c = self.feature_contributions(X)
        return c.sum(axis=1), c

    def score_matrix(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly scores and per-feature contributions of a float matrix whose columns are in
        the fitted order and already checked (finite, right width): the fast path of the batch
        scorer and the service, which validate rows themselves. With a dataset schema, `x` is
        the table of feature columns (the preprocessor reads each by its type)."""
        check_is_fitted(self)
        if self.schema is None:
            x = np.asarray(x, dtype="float64")
        c = self._contributions(self._residuals(self.preprocessor_.transform(x)))
        return c.sum(axis=1), c

    def score_and_errors(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly scores and squared reconstruction errors from one pass through the network."""
        r = self._residuals(self.preprocess(X))
        errors = fold_members(np.square(r), self.preprocessor_.n_features_out, "mean")
        return self._contributions(r).sum(axis=1), errors

    def score_tf(self, x_preprocessed):
        """Anomaly score from preprocessed features in TensorFlow ops (for the SavedModel export,
        so the exported graph computes the same score as `anomaly_score`)."""
        import tensorflow as tf

        check_is_fitted(self)
        return score_tf(self.score_type, self.score_stats_, self.residuals_tf(tf.cast(x_preprocessed, tf.float32)))

    @property
    def network_(self) -> str:
        """The trained network in words, e.g. ``"3 networks 64-32-16-32-64"``."""
        check_is_fitted(self)
        shape = "-".join(str(u) for u in self.hidden_units_)
        return f"{self.members_} networks {shape}" if self.members_ > 1 else f"one network {shape}"

    @property
    def feature_names_out_(self) -> list[str]:
        """Names of the preprocessed features the network sees."""
        check_is_fitted(self)
        return self.preprocessor_.output_names

    # -- threshold --------------------------------------------------------------------------
    def _check_threshold_set(self) -> None:
        check_is_fitted(self)

    def _input_dtypes(self, names: list[str]) -> dict[str, str]:
        if self.schema is None:
            return {c: "float64" for c in names}
        return {c.name: c.type for c in self.dataset_schema.feature_columns}

    # -- state ------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything but the network's weights, as JSON values (the model folder's manifest
        sections; `from_state` rebuilds the detector from them and the network)."""
        check_is_fitted(self)
        names = self._columns()
        training = {
            "n_train": int(self.n_train_), "n_validation": int(self.n_validation_),
            "batch_size": int(self.batch_size_), "hidden_units": [int(u) for u in self.hidden_units_],
            "data_fingerprint": self.training_fingerprint_, "epochs_run": int(self.n_epochs_),
            "best_epoch": int(self.best_epoch_), "history": self.history_,
            "members": int(self.members_),
        }
        if getattr(self, "split_", None):
            training["split"] = self.split_
        return {
            "detector_params": _json_params(self.get_params()),
            "detector_param_types": _sequence_types(self.get_params()),
            "input_schema": {"feature_names": names, "named": hasattr(self, "feature_names_in_"),
                             "dtypes": self._input_dtypes(names)},
            "preprocessing": self.preprocessor_.to_config(),
            "score_stats": stats_to_config(self.score_stats_),
            "threshold": self.threshold.to_dict(),
            "training": training,
        }

    @classmethod
    def from_state(cls, state: dict, model) -> AutoencoderDetector:
        """A fitted detector from `get_state()`'s sections and the Keras network."""
        params = _params_from_json(state["detector_params"], state.get("detector_param_types"))
        # A folder written before ensembles holds one network, whatever the default is today.
        params.setdefault("members", int(state["training"].get("members", 1)))
        det = cls(**params)
        det.preprocessor_ = Preprocessor.from_config(state["preprocessing"])
        names = list(state["input_schema"]["feature_names"])
        if names != list(det.preprocessor_.feature_names):
            raise ValueError(f"input schema columns {names} differ from the preprocessing's "
                             f"{det.preprocessor_.feature_names}")
        if tuple(model.input_shape[1:]) != (det.preprocessor_.n_features_out,):
            raise ValueError(f"the network takes {model.input_shape[1:]} inputs, but the "
                             f"preprocessing makes {det.preprocessor_.n_features_out} features")
        det.n_features_in_ = len(names)
        if state["input_schema"].get("named", True):
            det.feature_names_in_ = np.asarray(names, dtype=object)
        det._set_model(model)
        det.score_stats_ = stats_from_config(state["score_stats"])
        if det.score_type != "mse" and not det.score_stats_:
            raise ValueError(f"score {det.score_type!r} needs score statistics, which are missing")
        det.threshold = Threshold.from_dict(state["threshold"])
        t = state["training"]
        det.n_train_, det.n_validation_ = int(t["n_train"]), int(t["n_validation"])
        det.batch_size_ = int(t.get("batch_size", det.batch_size))
        det.hidden_units_ = tuple(t.get("hidden_units", ()))
        det.training_fingerprint_ = t["data_fingerprint"]
        det.n_epochs_, det.best_epoch_ = int(t["epochs_run"]), int(t["best_epoch"])
        det.history_ = t["history"]
        if t.get("split"):
            det.split_ = t["split"]
        det.validation_scores_ = np.array([])
        return det

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        model = state.pop("model_", None)
        state.pop("_residual_fn", None)
        state.pop("_dense", None)  # the network's layers: rebuilt from the saved model
        if model is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.keras"
                model.save(path)
                state["_keras_bytes"] = path.read_bytes()
        return state

    def __setstate__(self, state):
        keras_bytes = state.pop("_keras_bytes", None)
        super().__setstate__(state)
        if keras_bytes is not None:
            import keras

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.keras"
                path.write_bytes(keras_bytes)
                self._set_model(keras.saving.load_model(path, compile=False, safe_mode=True))

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, metadata: dict | None = None, *, overwrite: bool = False) -> Path:
        """Write a model folder (model.keras, weights.npz, reference.json + manifest.json), the
        documented way to ship a model; see `aedetect.store.folder`."""
        from aedetect.store.folder import HISTORY_FILE, MODEL_FILE, REFERENCE_FILE, write_folder
        from aedetect.store.weights import WEIGHTS_FILE, save_weights

        state = self.get_state()
        writers = {MODEL_FILE: self.model_.save,
                   WEIGHTS_FILE: lambda p: save_weights(self.model_, p)}  # for aedetect.serving.runtime
        reference = getattr(self, "reference_", None)  # the drift-monitoring profile, see aedetect.monitoring.reference
        if reference is not None:
            writers[REFERENCE_FILE] = lambda p: p.write_text(reference.to_json())
        history = getattr(self, "history_state_", None)  # where entity history continues from
        if history is not None:
            writers[HISTORY_FILE] = history.to_parquet
        return write_folder(path, state, writers, metadata=metadata, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike | ModelFolder) -> AutoencoderDetector:
        """Load a verified model folder (refused, with the reason, if it does not match)."""
        import keras

        from aedetect.errors import ArtifactError
        from aedetect.store.folder import MODEL_FILE, open_folder, read_history

        folder = open_folder(path)
        path, manifest = folder.path, folder.manifest
        try:
            model = keras.saving.load_model(path / MODEL_FILE, compile=False, safe_mode=True)
            det = cls.from_state(manifest.sections(), model)
        except Exception as exc:  # a hash-valid folder that still cannot be rebuilt
            raise ArtifactError(f"{path}: cannot rebuild the detector: {exc}") from None
        det.manifest_ = manifest
        det.history_state_ = read_history(folder)
        return det


def load_detector(path: str | os.PathLike | ModelFolder) -> AutoencoderDetector:
    """Load a verified model folder into a fitted AutoencoderDetector."""
    return AutoencoderDetector.load(path)
