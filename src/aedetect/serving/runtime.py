"""Scoring without TensorFlow: a verified model folder becomes scores, flags and contributions in NumPy.

The network is a stack of dense layers (see `aedetect.model.network`), so inference is a few
matrix products; importing TensorFlow to compute them costs seconds and most of a process's
memory. `load_scorer(model_dir)` verifies the folder (`aedetect.store.folder.read_manifest`), reads
the weights from `weights.npz` (written beside `model.keras` at save time and listed with its
sha256 in the manifest; `aedetect.store.weights`) and reuses the library's NumPy preprocessing and
score code. The network runs in float64 on the float32 preprocessed rows and float32 weights, as
the Keras path's inference pass does (`AutoencoderDetector`): in float32, the residual
(reconstruction - input) of a well-reconstructed row loses most of its digits to cancellation, and
two float32 implementations differ there by over 1e-4 relative. In float64 the scores are those
of the Keras path within `KERAS_RTOL` relative on every row (`tests/test_runtime.py`)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from aedetect.data.creditcard import numbers_model_schema
from aedetect.data.schema import DatasetSchema
from aedetect.errors import ArtifactError, DataError
from aedetect.model.preprocessing import Preprocessor
from aedetect.model.scorer import OutlierConventions
from aedetect.model.scores import contributions, member_residuals, stacked_contributions, stats_from_config
from aedetect.store.folder import ModelFolder, open_folder, read_history
from aedetect.store.weights import ACTIVATIONS, WEIGHTS_FILE, member_blocks, read_weights

CHUNK = 2048  # rows per block: a block's activations stay in the CPU caches
# The documented bound (docs/serving.md) on |runtime - Keras path| / |Keras path| per row score,
# both in float64 from the same float32 weights (what remains is the order of the sums).
KERAS_RTOL = 1e-9


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def top_features(errors: np.ndarray, names, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Names and values of the `k` features that contribute most to each row's score, largest
    first (equal values in column order); `names` None gives column positions instead."""
    k = min(k, errors.shape[1])
    if 4 * k <= errors.shape[1]:  # a few of many: k passes of argmax, cheaper than any sort
        rest = np.array(errors, dtype="float64")  # a copy, masked as each pass takes its largest
        idx = np.empty((len(errors), k), dtype=np.int64)
        values = np.empty((len(errors), k), dtype="float64")
        rows = np.arange(len(errors))
        for i in range(k):
            idx[:, i] = rest.argmax(axis=1)  # the first of equal values, as a stable sort takes
            values[:, i] = rest[rows, idx[:, i]]
            rest[rows, idx[:, i]] = -np.inf
    else:
        idx = np.argsort(-errors, axis=1, kind="stable")[:, :k]
        values = np.take_along_axis(errors, idx, axis=1)
    return (idx if names is None else np.asarray(names, dtype=object)[idx]), values


class Scorer(OutlierConventions):
    """A model folder's scoring half: preprocessing, network, score, threshold, in NumPy.

    Same attributes and scoring calls as a loaded `AutoencoderDetector` (`feature_names_in_`,
    `feature_names_out_`, `threshold_`, `manifest_`, `anomaly_score`, `score_with_contributions`,
    `score_matrix`, `predict`...), so batch scoring and the service take either.
    """

    def __init__(self, manifest, layers, path: Path | None = None):
        self.manifest_ = manifest
        self.path = path
        self.layers = layers  # as stored: float32 (the ONNX export builds its graph from them)
        # the network in float64, like the Keras path's inference pass (module docstring)
        self.layers64 = [(np.asarray(k, "float64"), np.asarray(b, "float64"), a) for k, b, a in layers]
        params = manifest.detector_params
        # A dataset schema: the input is a typed table (None: numbers only)
        self.schema = None if params.get("schema") is None else DatasetSchema.model_validate(params["schema"])
        self.score_type = params.get("score_type", params.get("score", "mse"))  # older folders: "score"
        self.score_stats_ = stats_from_config(manifest.score_stats)
        self.preprocessor_ = Preprocessor.from_config(manifest.preprocessing)
        self.feature_names_in_ = list(manifest.input_schema.feature_names)
        self.n_features_in_ = len(self.feature_names_in_)
        self.threshold_ = float(manifest.threshold.value)
        self.history_state_ = None  # entity history state (`load_scorer` reads the folder's)
        d = self.preprocessor_.n_features_out
        if layers[0][0].shape[0] != d or layers[-1][0].shape[1] % d:
            raise ArtifactError(f"{path}: the network maps {layers[0][0].shape[0]} to "
                                f"{layers[-1][0].shape[1]} features; the preprocessing gives {d}")
        self.members_ = layers[-1][0].shape[1] // d  # an ensemble: one reconstruction per member
        # An ensemble's kernels after the first are block-diagonal. `_stacked_contributions`
        # keeps them member-major: the first kernel's columns and every later kernel's diagonal
        # blocks stacked per member, the biases per member.
        m = self.members_
        self._stacked = None if m == 1 else [
            (np.stack(np.split(w, m, axis=1)) if i == 0 else np.stack(member_blocks(w, m)), b.reshape(m, 1, -1), a)
            for i, (w, b, a) in enumerate(self.layers64)]
        if self.members_ != manifest.training.members:
            raise ArtifactError(f"{path}: the network holds {self.members_} reconstruction(s); the "
                                f"manifest says {manifest.training.members} member(s)")
        if self.preprocessor_.feature_names != self.feature_names_in_:
            raise ArtifactError(f"{path}: the input schema and the preprocessing list different columns")
        if self.score_type != "mse" and not self.score_stats_:
            raise ArtifactError(f"{path}: score {self.score_type!r} needs score_stats, which the manifest lacks")
        if not np.isfinite(self.threshold_):
            raise ArtifactError(f"{path}: threshold {self.threshold_!r} is not a finite number")

    @property
    def dataset_schema(self) -> DatasetSchema:
        """The table the model reads (see `AutoencoderDetector.dataset_schema`)."""
        if self.schema is not None:
            return self.schema
        pre = self.preprocessor_
        return numbers_model_schema(pre.feature_names, pre.log_columns, pre.periodic_columns)

    @property
    def feature_names_out_(self) -> list[str]:
        return self.preprocessor_.output_names

    # -- the computation --------------------------------------------------------------------
    def reconstruct(self, x_pre: np.ndarray) -> np.ndarray:
        """The network's output (float64) for preprocessed rows (float32, as the preprocessing
        gives), row-major: an ensemble's members side by side, through its whole block-diagonal
        kernels. Scoring takes it for one network; an ensemble is scored member-major
        (`_stacked_contributions`), which tests hold to this one."""
        h = np.asarray(x_pre, dtype="float64")
        for kernel, bias, activation in self.layers64:
            h = h @ kernel
            h += bias
            h = ACTIVATIONS[activation](h)
        return h

    def residuals(self, x_pre: np.ndarray) -> np.ndarray:
        """reconstruction - x for preprocessed rows, in float64 like the Keras path (an
        ensemble's: each member's, member after member)."""
        return member_residuals(self.reconstruct(x_pre), x_pre)

    def _contributions(self, x_pre: np.ndarray) -> np.ndarray:
        """Contributions of preprocessed rows."""
        if self._stacked is not None:
            return self._stacked_contributions(x_pre)
        return contributions(self.score_type, self.score_stats_, self.residuals(x_pre),
                             self.preprocessor_.n_features_out).astype("float64")

    def _stacked_contributions(self, x_pre: np.ndarray, work: dict | None = None,
                               out: np.ndarray | None = None) -> np.ndarray:
        """An ensemble's contributions with each member's activations in one contiguous block,
        (members, rows, width): one BLAS product per member and layer on contiguous memory, and
        bias and activation in place, where `reconstruct`'s (rows, members x width) layout
        multiplies strided column blocks (1.3x slower on the 3-network default). The same
        figures: tests/test_runtime.py holds the two to each other.

        `work`: a dict the caller keeps between blocks of the same size (one per thread), where
        the activations live from block to block instead of fresh arrays per block. `out`: where
        the (rows, features) contributions go (a new array when None)."""
        n = len(x_pre)
        bufs = self._buffers(n) if work is None else work.get(n) or work.setdefault(n, self._buffers(n))
        x = bufs[0]
        x[...] = x_pre
        h = None
        for (kernel, bias, activation), buf in zip(self._stacked, bufs[1:], strict=False):
            if h is None:  # the first layer: every member reads the same input
                for k, part in enumerate(kernel):
                    np.matmul(x, part, out=buf[k])
            else:
                np.matmul(h, kernel, out=buf)
            h = buf
            h += bias
            h = ACTIVATIONS[activation](h)
        h -= x  # residuals, member-major
        return stacked_contributions(self.score_type, self.score_stats_, h, work=bufs[-1], out=out)

    def _buffers(self, n: int) -> list[np.ndarray]:
        """The input, each layer's activations and a last product's arrays for `n` rows."""
        m, d = self.members_, self.preprocessor_.n_features_out
        return ([np.empty((n, d))] + [np.empty((m, n, kernel.shape[2])) for kernel, _, _ in self._stacked]
                + [np.empty((m, n, d))])

    def _matrix(self, X):
        """Checked input: a float64 matrix, or for a schema model the table of feature columns
        (the preprocessor reads and checks each column by its type)."""
        if self.schema is not None:
            from aedetect.data.history import ensure_history
            from aedetect.data.schema import feature_table

            return feature_table(ensure_history(X, self.schema, self.history_state_), self.feature_names_in_)
        if hasattr(X, "columns"):  # a DataFrame (pandas is not imported for arrays)
            names = [str(c) for c in X.columns]
            missing = [c for c in self.feature_names_in_ if c not in names]
            if missing:
                raise DataError(f"X is missing column(s) {missing}; the model takes "
                                f"{self.n_features_in_} columns {self.feature_names_in_}")
            X = X[self.feature_names_in_]
            try:
                arr = X.to_numpy(dtype="float64")
            except (TypeError, ValueError):
                raise DataError("X has non-numeric column(s)") from None
        else:
            arr = np.asarray(X, dtype="float64")
            if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
                raise DataError(f"X must have shape (rows, {self.n_features_in_}) for the columns "
                                f"{self.feature_names_in_}; got {arr.shape}")
        finite = np.isfinite(arr)
        if not finite.all():
            r, c = np.argwhere(~finite)[0]
            raise DataError(f"X column {self.feature_names_in_[c]!r}, row {r + 1}: value "
                            f"{float(arr[r, c])} is not a finite number")
        return arr

    def preprocess(self, X) -> np.ndarray:
        """`X` checked against the model's columns and preprocessed: what the network sees (as
        `AutoencoderDetector.preprocess` gives it)."""
        return self.preprocessor_.transform(self._matrix(X))

    def feature_contributions(self, X) -> np.ndarray:
        """Each preprocessed feature's share of the score: rows sum to `anomaly_score(X)`."""
        return self._blocks(self._matrix(X))

    def score_matrix(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and contributions of a float matrix already checked by the caller (columns in
        the model's order, finite): the batch scorer's and the service's fast path."""
        c = self._blocks(x if self.schema is not None else np.asarray(x, dtype="float64"))
        return c.sum(axis=1), c

    def _blocks(self, x: np.ndarray) -> np.ndarray:
        """Contributions of checked rows `x`.

        The rows are preprocessed at once (column by column, vectorised); the network then runs
        on large inputs in blocks of `CHUNK` rows, one thread per core taking the next block
        until none is left, with BLAS on one thread: the blocks stay in the CPU caches, and a
        threaded BLAS on these narrow matrices spends its time synchronising (several times
        slower on a busy machine). Each thread keeps its activations from block to block, and
        writes its blocks' contributions into the one output array.
        """
        x_pre = self.preprocessor_.transform(x)
        if len(x_pre) <= CHUNK:
            return self._contributions(x_pre)
        import threading

        from threadpoolctl import threadpool_limits

        n = len(x_pre)
        out = np.empty((n, self.preprocessor_.n_features_out))
        starts, lock = iter(range(0, n, CHUNK)), threading.Lock()

        def work() -> None:  # blocks, taken one at a time, until none is left
            buffers: dict = {}
            while True:
                with lock:
                    s = next(starts, None)
                if s is None:
                    return
                if self._stacked is not None:
                    self._stacked_contributions(x_pre[s:s + CHUNK], buffers, out[s:s + CHUNK])
                else:
                    out[s:s + CHUNK] = self._contributions(x_pre[s:s + CHUNK])

        threads = min(usable_cores(), -(-n // CHUNK))
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
            for done in [pool.submit(work) for _ in range(threads)]:
                done.result()
        return out

    def score_with_contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        c = self.feature_contributions(X)
        return c.sum(axis=1), c

    def anomaly_score(self, X) -> np.ndarray:
        """Anomaly score of each row: higher = more anomalous (see `aedetect.model.scores`)."""
        return self.feature_contributions(X).sum(axis=1)


def load_scorer(model_dir: str | os.PathLike | ModelFolder) -> Scorer:
    """Verify a model folder and load its scoring runtime (NumPy only; never imports TensorFlow).

    A label-aware folder is refused: its score is the head's fraud probability, not the
    autoencoder's, and `open_scorer` loads it (its head over this runtime)."""
    folder = open_folder(model_dir)
    if folder.is_hybrid:
        raise ArtifactError(f"{folder.path}: a label-aware model (supervised head); its score is the head's "
                            "fraud probability: load it with aedetect.serving.runtime.open_scorer")
    return _runtime(folder)


def _runtime(folder: ModelFolder) -> Scorer:
    """The NumPy runtime of a verified folder (a label-aware folder's autoencoder too)."""
    path, manifest = folder.path, folder.manifest
    if WEIGHTS_FILE not in manifest.files:
        raise ArtifactError(f"{path}: the manifest lists no {WEIGHTS_FILE} (a folder saved by an "
                            "older aedetect); load it with AutoencoderDetector.load and save it again")
    try:
        scorer = Scorer(manifest, read_weights(path / WEIGHTS_FILE), path)
    except (DataError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot build the scorer: {exc}") from None
    scorer.history_state_ = read_history(folder)  # entity history continues from here
    return scorer


def needs_tensorflow(folder: ModelFolder) -> bool:
    """Whether scoring the verified `folder` needs TensorFlow: only a label-aware head that reads
    a code layer only Keras computed (`aedetect.model.hybrid.scoring_needs_keras`)."""
    if not folder.is_hybrid:
        return False
    from aedetect.model.hybrid import scoring_needs_keras  # scikit-learn: for label-aware folders only

    return scoring_needs_keras(folder)


def open_scorer(model_dir: str | os.PathLike | ModelFolder):
    """A model folder ready to score, its manifest read once: the NumPy runtime, or for a folder
    with a label-aware head the HybridDetector (its head needs scikit-learn), over the NumPy
    runtime too unless the head reads a code layer only Keras computed (some folders before
    hybrid format 3: `aedetect.model.hybrid.scoring_needs_keras`)."""
    folder = open_folder(model_dir)
    if folder.is_hybrid:
        from aedetect.model.hybrid import HybridDetector

        return HybridDetector.load(folder, None if needs_tensorflow(folder) else _runtime(folder))
    return load_scorer(folder)
