"""File helpers used everywhere a file is written or verified: one atomic write, one sha256.

A file or folder is written under a temporary name beside its target and renamed into place, so
a reader never sees half of one, and a failure (or Ctrl-C) leaves the target as it was. The
temporary name, `.<target name>.<pid>.<random><suffix>`, lets a later run tell the leftovers of
a killed run (`kill -9`, a power cut) from those of a run still going, and remove them
(`remove_stale`). `tempfile` creates files 0600 and folders 0700; outputs are chmod-ed to what
the umask allows, like any file the user creates, so a serving account other than the trainer
can read a model folder when the umask says so. Output paths are checked before work starts
(`check_output_path`) and never onto the input (`refuse_overwriting_input`). A `kill` cleans up
like Ctrl-C does (`sigterm_raises`), so no temporary file outlives a terminated run.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aedetect.errors import AedetectError, ArtifactError, DataError


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
    remove_stale(path, ".part")
    tmp = temp_beside(path, ".part")
    try:
        yield tmp
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    remove_stale(path, ".tmp")  # the half-written folder of a killed run
    tmp = temp_beside(path, ".tmp", folder=True)
    try:
        yield tmp
        apply_umask(tmp)  # mkdtemp made it 0700: readable per umask, like any new folder
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


# A config or schema file is a page of settings; a model folder's JSON is a few levels deep.
MAX_SETTINGS_BYTES = 8 << 20
MAX_JSON_BYTES = 256 << 20
MAX_NESTING = 64


class _TooDeep(Exception):
    pass


def read_yaml_or_json(path: str | os.PathLike, what: str = "file"):
    """The contents of a YAML (.yaml/.yml) or JSON file; a missing or unparsable file is an
    error naming it.

    A settings file is small and plain: at most `MAX_SETTINGS_BYTES`, nested at most
    `MAX_NESTING` levels, and YAML aliases (`*name`, merge keys `<<: *name`) are refused, since a
    1 KB file of nested aliases expands to gigabytes (a "billion laughs" file).
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise AedetectError(f"{path}: no such {what}")
    size = path.stat().st_size
    if size > MAX_SETTINGS_BYTES:
        raise AedetectError(f"{path}: {size:,} bytes is too large for a {what} (at most "
                            f"{MAX_SETTINGS_BYTES:,})")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.load(text, Loader=_loader_without_aliases())  # noqa: S506 - a SafeLoader
        else:
            data = json.loads(text)
        check_nesting(data)
    except _AliasFound as exc:
        raise AedetectError(f"{path}: line {exc.line}: YAML aliases (*{exc.anchor}) are not accepted "
                            f"in a {what}; write the value out in full") from None
    except (_TooDeep, RecursionError):
        raise AedetectError(f"{path}: nested more than {MAX_NESTING} levels deep; not a {what}") from None
    except Exception as exc:  # a user's file: say what is wrong, no traceback
        raise AedetectError(f"{path}: cannot parse ({type(exc).__name__}: {exc})") from None
    return data


def read_json_file(path: str | os.PathLike, what: str = "JSON file"):
    """A JSON file of a model folder, parsed; an unreadable, oversized or too deeply nested one
    (more than `MAX_NESTING` levels: a damaged or hostile file, which would otherwise end in a
    RecursionError) is an ArtifactError naming it."""
    import json

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ArtifactError(f"{path}: {size:,} bytes is too large for a {what}")
        data = json.loads(path.read_text())
        check_nesting(data)
    except (_TooDeep, RecursionError):
        raise ArtifactError(f"{path}: JSON nested too deeply (more than {MAX_NESTING} levels); the {what} "
                            "is damaged") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ArtifactError(f"{path}: not valid JSON ({type(exc).__name__}); the {what} is "
                            "damaged") from None
    return data


def check_nesting(data, limit: int = MAX_NESTING) -> None:
    """Raise _TooDeep when lists and dicts in `data` nest deeper than `limit` (no recursion)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > limit:
            raise _TooDeep
        stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))


class _AliasFound(Exception):
    def __init__(self, anchor: str, line: int):
        super().__init__(anchor)
        self.anchor, self.line = anchor, line


@functools.cache
def _loader_without_aliases():
    """PyYAML's SafeLoader, refusing every alias (anchors alone are harmless)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _AliasFound(event.anchor, event.start_mark.line + 1)
            return super().compose_node(parent, index)

    return Loader


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give `path` the mode a plain `open()`/`mkdir()` would have: 0666/0777 less the umask."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def temp_beside(target: str | os.PathLike, suffix: str, *, folder: bool = False) -> Path:
    """Create an empty temporary file (or folder) beside `target`, named after it and this pid."""
    target = Path(target)
    prefix = f".{target.name}.{os.getpid()}."
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(target: str | os.PathLike, suffix: str) -> list[Path]:
    """Remove temporary files or folders left beside `target` by runs that no longer exist."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{target.name}.") + r"(\d+)\..*" + re.escape(suffix) + "$")
    removed = []
    for p in target.parent.iterdir():
        m = pattern.match(p.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except OSError:
            continue  # not ours to remove: leave it
    return removed


def check_output_path(path: str | os.PathLike, *, what: str = "output") -> Path:
    """Refuse early, with a reason, an output path that cannot be written.

    Checked before any work starts (training can take an hour): the nearest existing folder
    above `path` must be a folder and accept a new file; `path` itself must not be a folder
    (for file outputs).
    """
    path = Path(path)
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor == ancestor.parent:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise DataError(f"cannot write {what} {path}: {ancestor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".aedetect-write-check.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"cannot write {what} {path}: {ancestor}: {exc.strerror or exc}") from None
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` name the same file (through links or relative paths too)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_overwriting_input(data: str | os.PathLike, out: str | os.PathLike) -> None:
    if same_file(data, out):
        raise DataError(f"--out {out} is the input file {data}: writing the scores there would "
                        "destroy the data; choose another output path")


@contextmanager
def sigterm_raises():
    """Turn SIGTERM into KeyboardInterrupt, so `kill` cleans up like Ctrl-C does.

    A signal that lands inside native code (TensorFlow tracing a function, say) can surface as
    another exception type wrapping ours; once SIGTERM was received, whatever propagates is
    reported as the KeyboardInterrupt it stands for.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt("terminated (SIGTERM)")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        if received:
            raise KeyboardInterrupt("terminated (SIGTERM)") from None
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
