"""File helpers used everywhere a file is written or verified: one atomic write, one sha256.

A file or folder is written under a temporary name beside its target and renamed into place, so
a reader never sees half of one, and a failure (or Ctrl-C) leaves the target as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aedetect.errors import AedetectError, ArtifactError


def sha256_file(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None,
                chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks; `progress(done, total)` is called after each."""
    path = Path(path)
    total, done = path.stat().st_size, 0
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return h.hexdigest()


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename."""
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


def read_yaml_or_json(path: str | os.PathLike, what: str = "file"):
    """The contents of a YAML (.yaml/.yml) or JSON file; a missing or unparsable file is an
    error naming it."""
    import json

    path = Path(path)
    if not path.is_file():
        raise AedetectError(f"{path}: no such {what}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # a user's file: say what is wrong, no traceback
        raise AedetectError(f"{path}: cannot parse ({type(exc).__name__}: {exc})") from None
