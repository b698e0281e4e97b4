"""Label-aware mode: the autoencoder's score and a supervised head, blended by how many labels
there are.

The autoencoder is trained on normal rows only, as always. A gradient-boosted classifier
(scikit-learn's HistGradientBoostingClassifier) is then trained on labelled rows, on the row's
features as the detector preprocesses them (`features=("raw",)`) or on those plus what the
autoencoder says about the row (its score, each feature's contribution to it, the code layer).

The score: the head's log-odds and the autoencoder's log score, each standardised on the
labelled normals (median and standard deviation), summed with weights `w` and `1 - w`. The
prior's weight is `w = n / (n + prior_anomalies)` for `n` labelled anomalies
(`prior_anomalies=25`: the autoencoder counts as much as 25 labelled anomalies): with few labels
the autoencoder leads and the head corrects it, with many the head leads. On the ULB time
protocol (docs/hybrid.md, the label curve) that weight beats both parts from 3 labelled frauds
up. On other data a head can outgrow the autoencoder far sooner (public sets whose anomalies are
one class of objects), so the weight is chosen, with the features:

Choice on out-of-fold scores: the labelled rows are cut into 4 contiguous folds in the order
given (`fit_hybrid` gives them in time order); for each feature set (`features="auto"`, the
default: the raw features, and all groups - raw plus the autoencoder's score, per-feature
contributions and code) a head learns from the other three folds and scores the fourth, and each
candidate - a feature set with the prior's weight or with the head alone - is scored by the
average precision of its out-of-fold blend. The best is refitted on every labelled row (ties:
raw before all groups, the prior's weight before the head alone); `selection_` holds every
candidate's figure. A fold whose other folds lack a class makes the choice impossible: then
raw features and the prior's weight.

The blended score is calibrated into a fraud probability on labelled rows that come later in
time than the ones the head learnt from, and the threshold rules of `aedetect.model.thresholds`
work on that probability.

Too few labels: with fewer than `min_anomalies` (3) labelled anomalies among the training rows
the head is not trained, and the hybrid scores with the autoencoder alone (`fallback_` says
why). From 3 labelled frauds the blend already gains on the ULB time protocol (docs/hybrid.md).

Scoring without TensorFlow: the head reads the preprocessed features, the autoencoder's score
and contributions and the code layer, which the NumPy runtime computes as the Keras path does
(the code layer by one NumPy function for both, `aedetect.store.weights.bottleneck`), and its
inputs rounded to float32 (`HEAD_INPUTS`), so `aedetect.serving.runtime.open_scorer` scores a
folder over the runtime (`load(folder, detector=scorer)`) with the probabilities of the Keras
one, except a folder before format 3 whose head reads Keras' code layer (`scoring_needs_keras`).

Storage, never a pickle: the autoencoder folder as usual, the head as `head.skops` (skops.io,
loaded with an explicit list of trusted types: the one scikit-learn class the tree predictor
needs), the blend, calibration and threshold as numbers in `hybrid.json`; the manifest holds the
sha256 of every file. Folders of format version 1 (a head's probability alone, no blend) still
load and score as they did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from aedetect.errors import ArtifactError
from aedetect.files import read_json_file
from aedetect.model.scorer import OutlierConventions
from aedetect.model.thresholds import HasThreshold, Threshold, normal_percentile
from aedetect.store.folder import HEAD_FILE, HYBRID_FILE, ModelFolder, open_folder

FEATURE_GROUPS = ("raw", "score", "contributions", "code")
DEFAULT_FEATURES = ("raw", "score", "contributions", "code")
MIN_ANOMALIES = 3
PRIOR_ANOMALIES = 25
SELECTION_FOLDS = 4
# Fewer labelled anomalies than this (at most one per fold): no out-of-fold choice (raw features,
# the prior's weight). Average precision over a fold's single anomaly is too noisy to choose by:
# on generated payment logs, 3 labelled frauds chose the head alone at PR-AUC 0.067 where the
# autoencoder had 0.370. From 5 up the choice stays: 10 cost 0.016 on public sets at 5 labels.
MIN_CHOICE_ANOMALIES = 5
CALIBRATIONS = ("sigmoid", "isotonic", "none")
FORMAT = "aedetect-hybrid"
FORMAT_VERSION = 3
# 1: the head's probability alone (no "blend"); 1 and 2: the code layer from Keras in float32
# (`CODE_KERAS`), 3: `code` names it
READABLE_VERSIONS = (1, 2, 3)
# How the head's code features were computed: NumPy in float64 from the stored weights
# (`aedetect.store.weights.bottleneck`, any engine, no TensorFlow), or the Keras layer in float32
# (folders before format 3, and networks whose activations the NumPy runtime lacks).
CODE_NUMPY, CODE_KERAS = "numpy float64", "keras float32"
# The head reads its inputs rounded to float32 (format 3 on). A tree splits at values of its
# training rows, and the Keras path and the NumPy runtime compute the autoencoder's features in
# float64 a few units of 1e-12 apart: unrounded, a training row that sits on a split could land
# on either side in another engine (52 of 8,400 head-training rows did on the
# test fixture's data; no unseen row).
# Rounded, both engines give the head the same numbers.
HEAD_INPUTS = "float32"
# The head's settings that hybrid.json keeps (`describe`) and `load` passes back.
HEAD_SETTINGS = ("max_iter", "learning_rate", "l2_regularization", "min_samples_leaf", "seed")
# The only non-builtin type a saved HistGradientBoostingClassifier holds beyond skops' defaults.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def _plain(value):
    """NumPy scalars in the threshold's estimate, as JSON numbers."""
    return value.item() if hasattr(value, "item") else str(value)


def residual_features(det, X, groups=DEFAULT_FEATURES, code: str = CODE_NUMPY,
                      contributions: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """The head's input for rows `X`: the chosen feature groups side by side, and their names.

    raw: the preprocessed features (hour of day for Time, log amount; standardised);
    score: the autoencoder's anomaly score; contributions: each preprocessed feature's share of
    it; code: the bottleneck layer's activations, computed as `code` says (`CODE_NUMPY` or
    `CODE_KERAS`). `det`: a fitted AutoencoderDetector or the NumPy runtime's `Scorer`, which
    give the same features (the code in NumPy needs no TensorFlow). `contributions`: `det`'s
    contributions of X when the caller has them (no second pass through the network).
    """
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown or not groups:
        raise ValueError(f"feature groups must be a non-empty subset of {FEATURE_GROUPS}; got {list(groups)}")
    names_out = list(det.feature_names_out_)
    x_pre = det.preprocess(X)  # validated and preprocessed, as the detector scores it
    blocks, names = [], []
    if "raw" in groups:
        blocks.append(x_pre)
        names += names_out
    if "score" in groups or "contributions" in groups:
        contrib = det.feature_contributions(X) if contributions is None else contributions
        if "score" in groups:
            blocks.append(contrib.sum(axis=1, keepdims=True))
            names.append("ae_score")
        if "contributions" in groups:
            blocks.append(contrib)
            names += [f"ae_contribution_{n}" for n in names_out]
    if "code" in groups:
        if code == CODE_NUMPY:
            from aedetect.store.weights import bottleneck

            codes = bottleneck(_dense_layers(det), x_pre)
        else:
            encoder = _encoder(det)
            # Called eagerly in chunks: a fresh Model's predict() would trace a new function each time.
            codes = np.vstack([np.asarray(encoder(x_pre[i:i + 65_536].astype("float32"), training=False))
                               for i in range(0, len(x_pre), 65_536)]).astype("float64")
        blocks.append(codes)
        names += [f"ae_code_{i}" for i in range(codes.shape[1])]
    return np.hstack(blocks), names


def _dense_layers(det) -> list:
    """The network's dense layers as stored (float32): the runtime's own, or read from Keras."""
    layers = getattr(det, "layers", None)  # the NumPy runtime's `Scorer`
    if layers is None:
        from aedetect.store.weights import dense_layers

        layers = dense_layers(det.model_)
    return layers


def numpy_code_engine(det) -> str:
    """`CODE_NUMPY` when the NumPy runtime computes every layer of `det`'s network, else
    `CODE_KERAS`."""
    from aedetect.store.weights import ACTIVATIONS

    try:
        layers = _dense_layers(det)
    except ValueError:  # a layer with no NumPy counterpart
        return CODE_KERAS
    return CODE_NUMPY if all(a in ACTIVATIONS for _, _, a in layers) else CODE_KERAS


def _encoder(det):
    """The autoencoder's input-to-bottleneck part (the narrowest hidden layer), in Keras."""
    import keras

    model = det.model_
    hidden = [layer for layer in model.layers if layer.name.startswith("hidden_")]
    narrowest = min(hidden, key=lambda layer: layer.units)
    return keras.Model(model.input, narrowest.output)


class _FromAutoencoder:
    """A HybridDetector attribute that reads the autoencoder's attribute (of the same name, or
    `name`)."""

    def __init__(self, name: str | None = None):
        self.name = name

    def __set_name__(self, owner, name: str) -> None:
        self.name = self.name or name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj.detector, self.name)


class HybridDetector(HasThreshold, OutlierConventions):
    """A fitted AutoencoderDetector plus a supervised head trained on labelled rows, blended.

    `fit(X, y, X_calibration, y_calibration)`: the head learns from (X, y), rows in time order;
    the calibration rows, later in time, turn the blended score into a probability and give the
    default threshold (the detector's `threshold_percentile` of their normal rows'
    probabilities). Without calibration rows the blend is mapped through a logistic function
    uncalibrated, and the threshold comes from the labelled normals of X (which the head saw).

    `anomaly_score(X)` is the fraud probability, or the autoencoder's score when `fallback_` is
    set. Explanations (`feature_contributions`) stay the autoencoder's.
    """

    def __init__(self, detector, *, features="auto", min_anomalies: int = MIN_ANOMALIES,
                 prior_anomalies: float = PRIOR_ANOMALIES, head_weight="auto", calibration: str = "sigmoid",
                 max_iter: int = 200, learning_rate: float = 0.05, l2_regularization: float = 1.0,
                 min_samples_leaf: int = 20, seed: int = 0):
        self.detector = detector
        self.features = features
        self.min_anomalies = min_anomalies
        self.prior_anomalies = prior_anomalies
        self.head_weight = head_weight
        self.calibration = calibration
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.l2_regularization = l2_regularization
        self.min_samples_leaf = min_samples_leaf
        self.seed = seed

    # -- training ---------------------------------------------------------------------------
    def fit(self, X, y, X_calibration=None, y_calibration=None) -> HybridDetector:
        from threadpoolctl import threadpool_limits

        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}; got {self.calibration!r}")
        if not self.prior_anomalies >= 0:
            raise ValueError(f"prior_anomalies must be >= 0; got {self.prior_anomalies!r}")
        hw = self.head_weight
        if not (hw in ("auto", "prior") or (isinstance(hw, int | float) and 0 <= hw <= 1)):
            raise ValueError(f"head_weight must be 'auto', 'prior' or in [0, 1]; got {self.head_weight!r}")
        check_is_fitted(self.detector)
        y = _labels(y, len(X), "y")
        self.n_train_ = len(y)
        self.n_anomalies_ = int(y.sum())
        self.head_, self.calibrator_, self.fallback_, self.blend_ = None, {"method": "none"}, None, None
        self.n_calibration_ = self.n_calibration_anomalies_ = 0
        self.selection_ = None
        self.features_ = DEFAULT_FEATURES if self.features == "auto" else tuple(self.features)
        self.code_ = numpy_code_engine(self.detector)
        self.head_inputs_ = HEAD_INPUTS
        self.threshold = self.detector.threshold
        if self.n_anomalies_ < self.min_anomalies:
            self.fallback_ = (f"{self.n_anomalies_} labelled anomalies in the training rows, fewer than "
                              f"{self.min_anomalies}: scoring with the autoencoder alone")
            return self
        if self.n_anomalies_ == len(y):
            raise ValueError("the labelled rows hold no normal row; the head needs both classes")
        y_cal = None
        if X_calibration is not None:
            y_cal = _labels(y_calibration, len(X_calibration), "y_calibration")
            self.n_calibration_, self.n_calibration_anomalies_ = len(y_cal), int(y_cal.sum())
        x, names, ae = self._inputs(X, self.features_)
        with threadpool_limits(1):  # one thread: on a shared machine OpenMP threads spin against each other
            cols, weight = self._choose(x, y, ae)
            self.head_ = self.new_head().fit(x[:, cols], y)
            self.head_feature_names_ = list(np.asarray(names)[cols])
            normals = y == 0
            z_normals = self.head_.decision_function(x[normals][:, cols])
            self.blend_ = _fit_blend(z_normals, ae[normals], weight)
            if y_cal is None:  # no later rows: the labelled normals give the threshold
                z_ref = _apply_blend(self.blend_, z_normals, ae[normals])
                source = "labelled normals (seen by the head)"
            else:
                x_cal, _, ae_cal = self._inputs(X_calibration, self.features_)
                z_cal = self._blended_inputs(x_cal[:, cols], ae_cal)
                self.calibrator_ = _fit_calibration(self.calibration, z_cal, y_cal)
                z_ref, source = z_cal[y_cal == 0], "calibration rows' normals"
        ref_normals = self._calibrated(z_ref)
        if ref_normals.size:
            q = self.detector.threshold_percentile
            self.threshold = Threshold("normal_percentile", normal_percentile(ref_normals, q), {"q": q},
                                       f"{source} ({ref_normals.size} rows)")
        return self

    def _inputs(self, X, groups, ae: np.ndarray | None = None,
                contributions: np.ndarray | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """The head's input for `groups` (see `residual_features`) with the label-based risk
        columns after the raw block (they go with every feature set), and the autoencoder's
        score (`ae`) and contributions, when the caller has already computed them."""
        from aedetect.data.history import add_history

        risk = self.label_features
        if risk and not all(c in X.columns for c in risk):  # a table without its history: after the state
            X = add_history(X, self.detector.dataset_schema, self.detector.history_state_)[0]
        x, names = residual_features(self.detector, X, groups, self.code_, contributions)
        if risk:
            at = len(self.detector.feature_names_out_) if "raw" in groups else 0
            x = np.hstack([x[:, :at], np.asarray(X[risk], dtype="float64"), x[:, at:]])
            names = [*names[:at], *risk, *names[at:]]
        if ae is None:
            ae = x[:, names.index("ae_score")] if "ae_score" in names else self.detector.anomaly_score(X)
        if self.head_inputs_ == "float32":  # see HEAD_INPUTS
            x = x.astype("float32").astype("float64")
        return x, names, ae

    @property
    def label_features(self) -> list[str]:
        """The label-based risk columns the head reads beside the autoencoder's features (none
        for a model without `HistorySpec.label_delay`)."""
        schema = self.detector.dataset_schema if getattr(self.detector, "schema", None) is not None else None
        return schema.label_features if schema is not None else []

    @property
    def feature_names_in_(self) -> np.ndarray:
        """The columns the hybrid reads: the autoencoder's (its very array without label-based
        risk), then the label-based risk ones."""
        risk = self.label_features
        names = self.detector.feature_names_in_
        return np.asarray([*names, *risk], dtype=object) if risk else names

    @property
    def n_features_in_(self) -> int:
        return len(self.feature_names_in_)

    def _choose(self, x, y, ae) -> tuple[slice, float]:
        """The head's columns of `x` and its weight in the blend, chosen on out-of-fold scores.

        The labelled rows are cut into `SELECTION_FOLDS` contiguous folds in the order given
        (time order from `fit_hybrid`); for each candidate feature set (raw, all groups; or the
        fixed `features`) a head learns from the other folds and scores each fold. Every
        candidate, each feature set with the prior's weight n / (n + prior_anomalies) or with the
        head alone (weight 1), is scored by the average precision of its out-of-fold blend over
        all labelled rows; the best wins, ties going to the earlier (raw before all groups, the
        prior's weight before the head alone). With fewer than `MIN_CHOICE_ANOMALIES` labelled
        anomalies, or a fold whose other folds hold no anomaly or no normal, no choice is made:
        the raw features (or the fixed ones) and the prior's weight, with `selection_["folds"]` 0.
        """
        n_raw = len(self.detector.feature_names_out_) + len(self.label_features)  # the raw block (and risk) first
        sets = {"raw": slice(0, n_raw), "all": slice(None)} if self.features == "auto" else {"given": slice(None)}
        prior = self.n_anomalies_ / (self.n_anomalies_ + self.prior_anomalies)
        weights = {"auto": (("prior", prior), ("head alone", 1.0)), "prior": (("prior", prior),)}.get(
            self.head_weight, (("given", self.head_weight),))
        folds = np.array_split(np.arange(len(y)), SELECTION_FOLDS)
        first = next(iter(sets))
        if len(sets) * len(weights) == 1:
            self.selection_ = None
            return sets[first], weights[0][1]
        others = [(self.n_anomalies_ - y[f].sum(), len(y) - len(f)) for f in folds]  # outside each fold
        if self.n_anomalies_ < MIN_CHOICE_ANOMALIES or any(not 0 < a < rows for a, rows in others):
            self.selection_ = {"metric": "out-of-fold average precision", "folds": 0, "chosen": first,
                               "head_weight": weights[0][0]}
            key, label = first, weights[0][0]
        else:
            key, label = self._best_out_of_fold(x, y, ae, sets, weights, folds)
        if self.features == "auto":
            self.features_ = DEFAULT_FEATURES if key == "all" else ("raw",)
        return sets[key], dict(weights)[label]

    def _best_out_of_fold(self, x, y, ae, sets, weights, folds) -> tuple[str, str]:
        """`_choose`'s scoring of every (feature set, weight) candidate; sets `selection_`."""
        from joblib import Parallel, delayed
        from sklearn.metrics import average_precision_score

        def out_of_fold(cols, held):
            learn = np.setdiff1d(np.arange(len(y)), held)
            return self.new_head().fit(x[learn][:, cols], y[learn]).decision_function(x[held][:, cols])

        # The heads run single-threaded (see fit), two at a time: the same figures, in about half the time.
        jobs = [(key, i) for key in sets for i in range(len(folds))]
        done = Parallel(n_jobs=2, prefer="threads")(delayed(out_of_fold)(sets[k], folds[i]) for k, i in jobs)
        oof = {key: np.empty(len(y)) for key in sets}
        for (key, i), z in zip(jobs, done, strict=True):
            oof[key][folds[i]] = z
        normals, scores = y == 0, {}
        for key in sets:
            for label, w in weights:
                blend = _fit_blend(oof[key][normals], ae[normals], w)
                scores[(key, label)] = float(average_precision_score(y, _apply_blend(blend, oof[key], ae)))
        key, label = max(scores, key=lambda k: scores[k])  # max keeps the first of equals
        self.selection_ = {"metric": "out-of-fold average precision", "folds": len(folds), "chosen": key,
                           "head_weight": label,
                           "scores": {f"{k} features, {w}": round(v, 6) for (k, w), v in scores.items()}}
        return key, label

    def new_head(self):
        """The unfitted head. No early stopping: every labelled row outside the training rows is
        kept for calibration and thresholds. l2 keeps near-pure leaves from exploding on 0.2%
        anomalies (without it the real data's test rows all score alike)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            l2_regularization=self.l2_regularization, min_samples_leaf=self.min_samples_leaf,
            early_stopping=False, random_state=self.seed)

    # -- scoring ----------------------------------------------------------------------------
    def _blended(self, X, ae: np.ndarray | None = None, contributions: np.ndarray | None = None) -> np.ndarray:
        """The blended score (format 1 folders: the head's log-odds alone); `ae` and
        `contributions`: the autoencoder's scores and contributions of X, when already computed."""
        x, _, ae = self._inputs(X, self.features_, ae, contributions)
        return self._blended_inputs(x, ae)

    def _blended_inputs(self, x: np.ndarray, ae: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            z = self.head_.decision_function(x)
        return z if self.blend_ is None else _apply_blend(self.blend_, z, ae)

    def _calibrated(self, z: np.ndarray) -> np.ndarray:
        return _apply_calibration(self.calibrator_, z)

    def predict_proba(self, X) -> np.ndarray:
        """[P(normal), P(anomaly)] per row; needs a trained head (no fallback)."""
        if self.head_ is None:
            raise RuntimeError(f"no supervised head: {self.fallback_}")
        p = self._calibrated(self._blended(X))
        return np.column_stack([1 - p, p])

    def anomaly_score(self, X) -> np.ndarray:
        """The calibrated fraud probability (the autoencoder's score in fallback mode): higher
        = more anomalous; rows above `threshold_` are flagged."""
        if self.head_ is None:
            return self.detector.anomaly_score(X)
        return self.predict_proba(X)[:, 1]

    def feature_contributions(self, X) -> np.ndarray:
        """The autoencoder's per-feature contributions, to explain a flag."""
        return self.detector.feature_contributions(X)

    def score_with_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        ae, contrib = self.detector.score_with_contributions(X)
        return (ae if self.head_ is None else self._calibrated(self._blended(X, ae, contrib))), contrib

    def score_matrix(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Scores and the autoencoder's contributions of checked rows in the fitted column order:
        a float matrix (the batch scorer's path) or the columns by name (a frame or a mapping of
        arrays: the service's path for a table model)."""
        import pandas as pd

        scores, contrib = self.detector.score_matrix(x)
        if self.head_ is not None:  # the network ran once: its scores go into the blend
            if isinstance(x, np.ndarray):  # a numbers-only model's matrix
                frame = pd.DataFrame(np.asarray(x, dtype="float64"), columns=[str(c) for c in self.feature_names_in_])
            else:
                frame = pd.DataFrame({c: x[c] for c in self.feature_names_in_})
            scores = self._calibrated(self._blended(frame, scores, contrib))
        return scores, contrib

    def score_and_errors(self, X) -> tuple[np.ndarray, np.ndarray]:
        return self.anomaly_score(X), self.detector.feature_errors(X)

    @property
    def score_type(self) -> str:
        """What `anomaly_score` returns, for reports."""
        return self.detector.score_type if self.head_ is None else "fraud_probability"

    # The autoencoder's fitted state that callers read from any scorer (named here, not forwarded
    # wholesale: a typo on a hybrid is an AttributeError, not the autoencoder's attribute).
    feature_names_out_ = _FromAutoencoder()
    preprocessor_ = _FromAutoencoder()
    schema = _FromAutoencoder()
    dataset_schema = _FromAutoencoder()
    split_ = _FromAutoencoder()
    reference_ = _FromAutoencoder()
    history_state_ = _FromAutoencoder()
    n_epochs_ = _FromAutoencoder()
    best_epoch_ = _FromAutoencoder()
    manifest_ = _FromAutoencoder()  # a loaded folder's (the alert store's model version)

    @property
    def needs_keras(self) -> bool:
        """Whether scoring needs the Keras network: a head that reads the code layer as Keras
        computed it (`CODE_KERAS`). Otherwise the NumPy runtime scores the same probabilities."""
        return _reads_keras_code(self.head_ is not None, self.features_, self.code_)


    def describe(self) -> dict:
        """How the hybrid was built, for hybrid.json and the CLI."""
        return {"mode": "autoencoder only (fallback)" if self.head_ is None else "supervised head",
                "fallback_reason": self.fallback_, "features": list(self.features_),
                "feature_selection": self.selection_,
                "min_anomalies": int(self.min_anomalies),
                "prior_anomalies": float(self.prior_anomalies), "head_weight": self.head_weight,
                "blend": self.blend_, "code": self.code_,
                "head": None if self.head_ is None else {
                    "model": "HistGradientBoostingClassifier", "max_iter": int(self.max_iter),
                    "learning_rate": float(self.learning_rate),
                    "l2_regularization": float(self.l2_regularization),
                    "min_samples_leaf": int(self.min_samples_leaf), "seed": int(self.seed),
                    "inputs": self.head_inputs_,
                    "input_names": list(self.head_feature_names_)},
                "calibration": self.calibrator_,
                "rows": {"train": int(self.n_train_), "train_anomalies": int(self.n_anomalies_),
                         "calibration": int(self.n_calibration_),
                         "calibration_anomalies": int(self.n_calibration_anomalies_)}}

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, metadata: dict | None = None, *, overwrite: bool = False) -> Path:
        """One model folder: the autoencoder's files (model.keras, weights.npz, the history
        state), head.skops and hybrid.json, all hashed in the manifest and written atomically
        (`aedetect.store.folder.write_folder`)."""
        import sklearn
        import skops
        import skops.io as sio

        from aedetect.store.folder import HISTORY_FILE, MODEL_FILE, REFERENCE_FILE, write_folder
        from aedetect.store.weights import WEIGHTS_FILE, save_weights

        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.describe(),
               "threshold": self.threshold.to_dict(),
               "versions": {"scikit-learn": sklearn.__version__, "skops": skops.__version__}}
        writers = {MODEL_FILE: self.detector.model_.save,
                   # the NumPy runtime's network: `aedetect.serving.runtime.open_scorer` scores
                   # the folder without TensorFlow (unless `scoring_needs_keras`)
                   WEIGHTS_FILE: lambda p: save_weights(self.detector.model_, p),
                   HYBRID_FILE: lambda p: p.write_text(json.dumps(doc, indent=2, default=_plain))}
        if self.head_ is not None:
            writers[HEAD_FILE] = lambda p: sio.dump(self.head_, p)
        history = getattr(self.detector, "history_state_", None)
        if history is not None:
            writers[HISTORY_FILE] = history.to_parquet
        reference = getattr(self.detector, "reference_", None)  # the hybrid's own: see training.workflow
        if reference is not None and reference.threshold == self.threshold_:
            writers[REFERENCE_FILE] = lambda p: p.write_text(reference.to_json())
        return write_folder(path, self.detector.get_state(), writers, metadata=metadata, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike | ModelFolder, detector=None) -> HybridDetector:
        """Load a verified folder (the manifest checks every file's sha256, head and hybrid.json
        included); skops rebuilds the head from trusted types only.

        `detector`: the folder's autoencoder already loaded, else the Keras one is. The NumPy
        runtime's `Scorer` scores the same probabilities without TensorFlow wherever
        `scoring_needs_keras` is False (`aedetect.serving.runtime.open_scorer` passes it then);
        it scores only: it has no Keras network to train or export.
        """
        folder = open_folder(path)
        path, files = folder.path, folder.manifest.files
        if not folder.is_hybrid:
            raise ArtifactError(f"{path}: the manifest does not list {HYBRID_FILE}; not a hybrid model")
        doc = read_hybrid(path)
        code = code_of(doc)
        if detector is not None and not hasattr(detector, "model_") and scoring_needs_keras(folder, doc):
            raise ArtifactError(f"{path}: the head reads the code layer as Keras computed it; score "
                                "it with the Keras autoencoder (AutoencoderDetector.load)")
        if detector is None:
            from aedetect.model.detector import AutoencoderDetector

            det = AutoencoderDetector.load(folder)
        else:
            det = detector
        head = doc.get("head") or {}
        hybrid = cls(det, features=tuple(doc["features"]), min_anomalies=doc["min_anomalies"],
                     prior_anomalies=doc.get("prior_anomalies", PRIOR_ANOMALIES),
                     head_weight=doc.get("head_weight", "auto"),
                     calibration=doc["calibration"].get("method", "none"),
                     **{k: head[k] for k in HEAD_SETTINGS if k in head})
        hybrid.head_ = None
        if head:
            import skops.io as sio

            if HEAD_FILE not in files:
                raise ArtifactError(f"{path}: {HYBRID_FILE} describes a head but {HEAD_FILE} is not listed")
            try:
                hybrid.head_ = sio.load(path / HEAD_FILE, trusted=TRUSTED_TYPES)
            except Exception as exc:  # untrusted types or a damaged file: refuse, do not guess
                raise ArtifactError(f"{path / HEAD_FILE}: cannot load the supervised head: {exc}") from None
            hybrid.head_feature_names_ = list(head["input_names"])
        # before format 3: unrounded
        hybrid.head_inputs_ = head.get("inputs", "float64") if doc["format_version"] >= 3 else "float64"
        hybrid.features_ = tuple(doc["features"])
        hybrid.code_ = code
        hybrid.selection_ = doc.get("feature_selection")
        hybrid.fallback_ = doc.get("fallback_reason")
        hybrid.blend_ = doc.get("blend")  # None in format 1: the head's log-odds alone
        hybrid.calibrator_ = doc["calibration"]
        rows = doc["rows"]
        hybrid.n_train_, hybrid.n_anomalies_ = rows["train"], rows["train_anomalies"]
        hybrid.n_calibration_, hybrid.n_calibration_anomalies_ = rows["calibration"], rows["calibration_anomalies"]
        hybrid.threshold = Threshold.from_dict(doc["threshold"])
        return hybrid


def describe_head(hybrid) -> str:
    """One line on what --use-labels built, for the CLI."""
    if hybrid.head_ is None:
        return f"[yellow]warning: --use-labels: {hybrid.fallback_}[/yellow]"
    cal = hybrid.calibrator_["method"]
    weight = "" if hybrid.blend_ is None else (
        f"; blended with the autoencoder's score, head weight {hybrid.blend_['head_weight']:.2f}")
    return (f"supervised head: {hybrid.n_train_:,} labelled rows ({hybrid.n_anomalies_:,} anomalies){weight}; "
            + (f"fraud probability calibrated ({cal}) on {hybrid.n_calibration_:,} later rows "
               f"({hybrid.n_calibration_anomalies_:,} anomalies)" if cal != "none" else "not calibrated")
            + "; features: " + _features_line(hybrid))


def _features_line(hybrid) -> str:
    sel, names = hybrid.selection_, " + ".join(hybrid.features_)
    risk = hybrid.label_features
    if risk:
        delay = hybrid.detector.dataset_schema.history.label_delay / 86_400
        names += f" + {len(risk)} label-based risk columns (label delay {delay:g} d)"
    if not sel or not sel.get("scores"):  # fixed, or chosen in a version-1 folder's way
        return names
    return (f"{names}; {sel['head_weight']} weight (out-of-fold average precision "
            f"{max(sel['scores'].values()):.3f} over {sel['folds']} folds, the best of {len(sel['scores'])})")


def label_rows(split, n_rows: int, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which labelled rows of a split train the head and which calibrate it; never test rows.

    The head learns from every row outside the selection and test sets (time protocol: the
    training period, frauds included), and the selection set (time protocol: the window after
    the training period) calibrates the head and chooses the threshold. When those rows hold no
    anomaly but the selection set does (`y` given; the guide protocol keeps its 12 labelled
    frauds outside the test set in the selection set), the head learns from both, less the
    validation normals, which calibrate it (the threshold only: they hold no anomaly).
    """
    fit = np.setdiff1d(np.arange(n_rows), np.concatenate([split.selection, split.test]))
    cal = np.asarray(split.selection)
    if y is not None and not np.asarray(y)[fit].any() and np.asarray(y)[cal].any():
        learn = np.setdiff1d(np.concatenate([fit, cal]), split.validation)
        return learn, np.asarray(split.validation)
    return fit, cal


def fit_hybrid(det, df, split, schema, *, min_anomalies: int = MIN_ANOMALIES, seed: int = 0) -> HybridDetector:
    """The hybrid for a trained detector and its split (see `label_rows`); no test row is used."""
    from aedetect.data.schema import as_dataset_schema

    X, y = df[list(schema.features) + schema.label_features], df[schema.label].to_numpy()
    fit, cal = label_rows(split, len(df), y)
    ds = as_dataset_schema(schema)
    if ds.time:  # the head's folds follow time (ties: file order)
        fit = fit[np.argsort(ds.time_seconds(df)[fit], kind="stable")]
    hybrid = HybridDetector(det, min_anomalies=min_anomalies, seed=seed)
    hybrid.fit(X.iloc[fit], y[fit], X.iloc[cal], y[cal])
    unseen = int(np.asarray(y)[split.test].sum()) if len(split.test) else 0
    if hybrid.fallback_ is not None and unseen:  # verdicts on the latest alerts: all in the test window
        hybrid.fallback_ += (f"; {unseen} more are in the test window, the latest rows, which the head never "
                             "sees: to learn from them, train with no test window (--set test_share=0, or a "
                             "later labelled file as --test-data)")
    return hybrid


def open_model(path: str | os.PathLike | ModelFolder):
    """A model folder as the right estimator, its manifest read once: HybridDetector when it
    holds a label-aware head, else AutoencoderDetector (needs TensorFlow; for scoring without
    it, `aedetect.serving.runtime.open_scorer`)."""
    from aedetect.model.detector import AutoencoderDetector

    folder = open_folder(path)
    return (HybridDetector if folder.is_hybrid else AutoencoderDetector).load(folder)


load_model = open_model  # the name docs/hybrid.md has used


def code_of(doc: dict) -> str:
    """How the head of a hybrid.json's folder reads the code layer (before format 3: Keras)."""
    return doc.get("code", CODE_KERAS) if doc.get("format_version", 1) >= 3 else CODE_KERAS


def _reads_keras_code(has_head: bool, features, code: str) -> bool:
    """Whether a head reads a code layer that only Keras computed."""
    return has_head and "code" in features and code != CODE_NUMPY


def scoring_needs_keras(folder: ModelFolder, doc: dict | None = None) -> bool:
    """Whether scoring the label-aware `folder` needs TensorFlow: its head reads a code layer
    only Keras computed (`CODE_KERAS`: folders before format 3, or a network the NumPy runtime
    cannot run), or the folder lacks the runtime's weights. `doc`: its hybrid.json, when read."""
    from aedetect.store.weights import ACTIVATIONS, WEIGHTS_FILE

    doc = read_hybrid(folder.path) if doc is None else doc
    return (_reads_keras_code(bool(doc.get("head")), doc["features"], code_of(doc))
            or WEIGHTS_FILE not in folder.manifest.files
            or folder.manifest.detector_params.get("activation", "relu") not in ACTIVATIONS)


def read_hybrid(path: Path) -> dict:
    """Parse hybrid.json (its sha256 is checked with the manifest's files)."""
    fpath = Path(path) / HYBRID_FILE
    doc = read_json_file(fpath, "label-aware head")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") not in READABLE_VERSIONS:
        *first, last = map(str, READABLE_VERSIONS)
        raise ArtifactError(f"{fpath}: not an {FORMAT} file of version {', '.join(first)} or {last}")
    return doc


# -- labels and calibration -------------------------------------------------------------------
def _labels(y, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{name} must hold one label per row ({n}); got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must be 0 (normal) or 1 (anomaly); got values {np.unique(y)[:5].tolist()}")
    return y.astype(int)


def _fit_blend(head_normals: np.ndarray, ae_normals: np.ndarray, weight: float) -> dict:
    """The blend's numbers, for JSON: each part's centre and scale on the labelled normals (the
    head's log-odds, the autoencoder's log score) and the head's weight."""
    def standard(v: np.ndarray) -> dict:
        scale = float(np.std(v))
        return {"center": float(np.median(v)), "scale": scale if scale > 0 else 1.0}

    return {"head_weight": float(weight), "head": standard(head_normals),
            "autoencoder": standard(np.log1p(ae_normals))}


def _apply_blend(blend: dict, head: np.ndarray, ae: np.ndarray) -> np.ndarray:
    h, a, w = blend["head"], blend["autoencoder"], blend["head_weight"]
    return (w * (head - h["center"]) / h["scale"]
            + (1 - w) * (np.log1p(np.asarray(ae, dtype="float64")) - a["center"]) / a["scale"])


def _fit_calibration(method: str, z: np.ndarray, y: np.ndarray) -> dict:
    """Map the head's log-odds to probabilities on later labelled rows; plain numbers, for JSON.

    sigmoid (Platt): p = 1 / (1 + exp(-(a z + b))), strictly increasing when a > 0, so the
    ranking (PR-AUC) is the head's. isotonic: a step function, which can tie rows.
    """
    if method == "none":
        return {"method": "none"}
    if not ((y == 1).any() and (y == 0).any()):
        return {"method": "none", "note": f"calibration rows hold {int(y.sum())} anomalies of {len(y)}: "
                "the head's own probabilities are used"}
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4).fit(z.reshape(-1, 1), y)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if a <= 0:
            return {"method": "none", "note": "the head's output does not rise with fraud on the calibration "
                    "rows; its own probabilities are used"}
        return {"method": "sigmoid", "a": a, "b": b}
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(z, y)
    return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def _apply_calibration(cal: dict, z: np.ndarray) -> np.ndarray:
    if cal["method"] == "sigmoid":
        return 1.0 / (1.0 + np.exp(-(cal["a"] * z + cal["b"])))
    if cal["method"] == "isotonic":
        return np.interp(z, np.asarray(cal["x"]), np.asarray(cal["y"]))
    return 1.0 / (1.0 + np.exp(-z))
