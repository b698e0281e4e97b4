"""The artifact folder: `model.keras` (config + weights) and `manifest.json`. Never a pickle.

The manifest holds the input schema, the fitted preprocessing, the threshold and how it was
chosen, the training-data fingerprint, library versions and the sha256 of every file. A folder
is written under a temporary name and renamed into place, so readers never see half of one.
Loading verifies format, hashes and shapes, and refuses a folder that does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from aedetect.errors import ArtifactError
from aedetect.scores import stats_from_config, stats_to_config

FORMAT = "aedetect-artifact"
FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"


class Manifest(BaseModel):
    format: Literal["aedetect-artifact"]
    format_version: int
    created_at: str
    versions: dict[str, str]
    detector_params: dict
    input_schema: dict
    preprocessing: dict
    score_stats: dict = {}
    threshold: dict
    training: dict
    metadata: dict = {}
    files: dict[str, str]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow

    from aedetect import __version__

    return {"aedetect": __version__, "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


@contextmanager
def atomic_folder(path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename.

    Readers never see half a folder, and a failure (or Ctrl-C) leaves `path` as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_detector(detector, path, metadata: dict | None = None, *, overwrite: bool = False) -> Path:
    path = Path(path)
    with atomic_folder(path, overwrite=overwrite) as tmp:
        detector.model_.save(tmp / MODEL_FILE)
        manifest = Manifest(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            versions=_versions(),
            detector_params=detector.get_params(),
            input_schema={"feature_names": list(detector.feature_names_in_),
                          "dtypes": {c: "float64" for c in detector.feature_names_in_}},
            preprocessing=detector.preprocessor_.to_config(),
            score_stats=stats_to_config(detector.score_stats_),
            threshold=detector.threshold.to_dict(),
            training={
                "n_train": int(detector.n_train_),
                "n_validation": int(detector.n_validation_),
                "batch_size": int(detector.batch_size_),
                "hidden_units": list(detector.hidden_units_),
                "data_fingerprint": detector.training_fingerprint_,
                "epochs_run": int(detector.n_epochs_),
                "best_epoch": int(detector.best_epoch_),
                "history": detector.history_,
            },
            metadata=metadata or {},
            files={MODEL_FILE: _sha256(tmp / MODEL_FILE)},
        )
        (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return path


def read_manifest(path) -> Manifest:
    """Parse and verify a folder's manifest and file hashes; raise ArtifactError if off."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such model folder")
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise ArtifactError(f"{path}: {MANIFEST_FILE} is missing; not an aedetect model folder")
    try:
        raw = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: format is {raw.get('format') if isinstance(raw, dict) else None!r}, "
                            f"expected {FORMAT!r}")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{mpath}: format_version {raw.get('format_version')!r} is not supported "
                            f"(this aedetect reads version {FORMAT_VERSION})")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{mpath}: field {loc!r}: {first['msg']}") from None
    if MODEL_FILE not in manifest.files:
        raise ArtifactError(f"{mpath}: lists no {MODEL_FILE}")
    for name, expected in manifest.files.items():
        fpath = path / name
        if Path(name).name != name:
            raise ArtifactError(f"{mpath}: file name {name!r} points outside the folder")
        if not fpath.is_file():
            raise ArtifactError(f"{path}: {name} is missing")
        actual = _sha256(fpath)
        if actual != expected:
            raise ArtifactError(
                f"{fpath}: sha256 {actual} does not match the manifest ({expected}); "
                "the file was changed or damaged after saving"
            )
    return manifest


def load_detector(path):
    """Load a verified artifact folder into a fitted AutoencoderDetector."""
    import keras
    import numpy as np

    from aedetect.detector import AutoencoderDetector
    from aedetect.preprocessing import Preprocessor
    from aedetect.thresholds import Threshold

    path = Path(path)
    manifest = read_manifest(path)
    try:
        model = keras.saving.load_model(path / MODEL_FILE, compile=False, safe_mode=True)
        params = dict(manifest.detector_params)
        params["periodic_columns"] = [tuple(p) for p in params.get("periodic_columns", [])]
        det = AutoencoderDetector(**params)
        pre = Preprocessor.from_config(manifest.preprocessing)
    except ArtifactError:
        raise
    except Exception as exc:  # a hash-valid folder that still cannot be rebuilt
        raise ArtifactError(f"{path}: cannot rebuild the detector: {exc}") from None
    if tuple(model.input_shape[1:]) != (pre.n_features_out,):
        raise ArtifactError(f"{path}: model input {model.input_shape} does not match the "
                            f"{pre.n_features_out} preprocessed features in the manifest")
    det.model_ = model
    det._score_fn = None
    det.preprocessor_ = pre
    det.score_stats_ = stats_from_config(manifest.score_stats)
    if det.score != "mse" and not det.score_stats_:
        raise ArtifactError(f"{path}: score {det.score!r} needs score_stats, which the manifest lacks")
    det.feature_names_in_ = list(manifest.input_schema["feature_names"])
    det.n_features_in_ = len(det.feature_names_in_)
    det.threshold = Threshold.from_dict(manifest.threshold)
    t = manifest.training
    det.n_train_, det.n_validation_ = t["n_train"], t["n_validation"]
    det.batch_size_ = t.get("batch_size", det.batch_size)
    det.hidden_units_ = tuple(t.get("hidden_units", ()))
    det.training_fingerprint_ = t["data_fingerprint"]
    det.n_epochs_, det.best_epoch_ = t["epochs_run"], t["best_epoch"]
    det.history_ = t["history"]
    det.validation_scores_ = np.array([])
    det.manifest_ = manifest
    return det
