"""The model folder: its files, a typed manifest and the sha256 of every file. Never a pickle.

This module knows nothing of the detector (the manifest's sections and their checks:
`aedetect.store.manifest`): the detector hands it its state (the manifest's
sections, from `AutoencoderDetector.get_state`) and a writer per file, and gets back a verified
manifest. A folder is written under a temporary name and renamed into place, so readers never see
half of one. Reading checks the format, the types of every section and the hash of every file,
and refuses a folder that does not match, with the reason. Importing it needs no TensorFlow.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import ValidationError

from aedetect.errors import ArtifactError
from aedetect.files import atomic_folder, read_json_file, sha256_file
from aedetect.store.manifest import Manifest, first_error

FORMAT = "aedetect-artifact"
FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
HYBRID_FILE = "hybrid.json"  # the label-aware head's description (aedetect.model.hybrid)
HEAD_FILE = "head.skops"  # the label-aware head itself
HISTORY_FILE = "history.parquet"  # entity history state at the end of the training data (aedetect.data.history)
REFERENCE_FILE = "reference.json"  # the drift-monitoring profile (aedetect.monitoring.reference), when trained with one
MAX_MANIFEST_BYTES = 64 << 20

__all__ = ["FORMAT", "FORMAT_VERSION", "HISTORY_FILE", "MANIFEST_FILE", "MODEL_FILE", "REFERENCE_FILE", "Manifest",
           "atomic_folder", "read_manifest", "write_folder"]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("aedetect", "keras", "tensorflow", "numpy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def write_folder(path, state: Mapping, writers: Mapping[str, Callable[[Path], object]], *,
                 metadata: dict | None = None, overwrite: bool = False) -> Path:
    """Write a model folder: each `writers[name](file_path)` writes one file, then the manifest
    (the `state` sections, metadata, versions and every file's sha256). Atomic."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    with atomic_folder(path, overwrite=overwrite, marker=False) as tmp:  # the manifest marks it
        for name, write in writers.items():
            write(tmp / name)
        try:
            manifest = Manifest(
                format=FORMAT, format_version=FORMAT_VERSION,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                versions=_versions(), metadata=metadata or {},
                files={name: sha256_file(tmp / name) for name in writers}, **state)
        except ValidationError as exc:
            raise ArtifactError(f"cannot write {path}: {first_error(exc)}") from None
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
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{mpath}: {mpath.stat().st_size:,} bytes is too large for a manifest")
    raw = read_json_file(mpath, "manifest")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: format is {raw.get('format') if isinstance(raw, dict) else None!r}, "
                            f"expected {FORMAT!r}")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{mpath}: format_version {raw.get('format_version')!r} is not supported "
                            f"(this aedetect reads version {FORMAT_VERSION})")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{mpath}: {first_error(exc)}") from None
    if MODEL_FILE not in manifest.files:
        raise ArtifactError(f"{mpath}: lists no {MODEL_FILE}")
    for name, expected in manifest.files.items():
        fpath = path / name
        if Path(name).name != name:
            raise ArtifactError(f"{mpath}: file name {name!r} points outside the folder")
        if not fpath.is_file():
            raise ArtifactError(f"{path}: {name} is missing")
        actual = sha256_file(fpath)
        if actual != expected:
            raise ArtifactError(
                f"{fpath}: sha256 {actual} does not match the manifest ({expected}); "
                "the file was changed or damaged after saving"
            )
    if REFERENCE_FILE in manifest.files and HYBRID_FILE not in manifest.files:
        problem = threshold_problem(manifest.threshold.value,
                                    read_json_file(path / REFERENCE_FILE, "reference profile"))
        if problem:
            raise ArtifactError(f"{mpath}: {problem}")
    return manifest


def threshold_problem(t: float, reference) -> str | None:
    """Why threshold `t` does not fit the model's own validation scores, or None.

    The reference profile (reference.json) holds a sample of the validation normals' scores,
    the threshold it was computed at and the share of validation normals that threshold
    flagged (the promise). A different threshold is judged against them: one more than 10 times
    the highest validation score flags nothing although the promise flags some; one that flags
    more than max(10 x the promise, the promise + 5%) of the validation scores breaks it. A
    threshold edited by hand to 1e300 or to 0 stops here, with the numbers."""
    try:
        sample = [float(v) for v in reference["score"]["sample"]]
        t0 = float(reference["threshold"])
        fpr = reference["flagged"]["fpr"]
        promise = float(fpr["value"]) if fpr.get("value") is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    if len(sample) < 20 or promise is None or abs(t - t0) <= 1e-9 * max(abs(t0), 1.0):
        return None
    top = max(sample)
    share = sum(v > t for v in sample) / len(sample)
    at = (f"at the threshold it was trained with ({t0:.6g}) {promise:.3%} of the validation normals "
          f"were flagged")
    if promise > 0 and top > 0 and t > 10 * top:
        return (f"threshold {t:.6g} is {t / top:.3g} times the highest of {len(sample)} validation "
                f"scores ({top:.6g}) and would flag nothing; {at}")
    if share > max(10 * promise, promise + 0.05):
        return (f"threshold {t:.6g} flags {share:.1%} of {len(sample)} validation scores; {at}")
    return None


def read_history(folder) -> object | None:
    """The entity history state a verified folder holds (`aedetect.data.history.HistoryState`),
    or None."""
    if HISTORY_FILE not in folder.manifest.files:
        return None
    from aedetect.data.history import HistoryState

    try:
        return HistoryState.from_parquet(folder.path / HISTORY_FILE)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{folder.path / HISTORY_FILE}: cannot read the history state ({exc})") from None


@dataclass(frozen=True)
class ModelFolder:
    """A verified model folder: its manifest read and every file hashed once, then handed to
    whichever loader needs it (the estimator, the label-aware head, the NumPy runtime)."""

    path: Path
    manifest: Manifest

    @property
    def is_hybrid(self) -> bool:
        """True when the folder holds a label-aware head (`aedetect.model.hybrid`)."""
        return HYBRID_FILE in self.manifest.files


def open_folder(path: str | os.PathLike | ModelFolder) -> ModelFolder:
    """Verify a model folder once (`read_manifest`); a ModelFolder is returned as it is."""
    if isinstance(path, ModelFolder):
        return path
    return ModelFolder(Path(path), read_manifest(path))
