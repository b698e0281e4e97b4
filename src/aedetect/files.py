"""File helpers used everywhere a file is written or verified: one atomic write, one sha256.

A file or folder is written under a temporary name beside its target and renamed into place, so
a reader never sees half of one, and a failure (or Ctrl-C) leaves the target as it was. The
temporary name, `.<target name>.<pid>.<random><suffix>`, lets a later run tell the leftovers of
a killed run (`kill -9`, a power cut) from those of a run still going, and remove them
(`remove_stale`). `tempfile` creates files 0600 and folders 0700; outputs are chmod-ed to what
the umask allows, like any file the user creates, so a serving account other than the trainer
can read a model folder when the umask says so. A `kill` cleans up like Ctrl-C does
(`sigterm_raises`), so no temporary file outlives a terminated run.

Outputs never destroy inputs: every command that writes calls `check_output` before any work
starts, and the writers check again when they rename. The rule:

- An output that is the same file as an input, lies inside an input folder or a folder the
  command reads (a model folder), or holds one of them, is refused, naming both paths.
- An output never lands inside a folder aedetect wrote (a model folder, an export, a report):
  replacing a file there would break the folder (a model folder's hashes, say).
- A folder aedetect writes carries a marker naming the files it wrote: the model folder's
  `manifest.json` (its `files`, written by `aedetect.store.folder`), and for every other folder
  `_aedetect-files.json` (`{"format": "aedetect-files", "files": [relative paths]}`, written by
  `atomic_folder`, or `mark_folder` for a folder another program writes, such as Spark). Both
  markers are JSON with a `format` that starts with "aedetect" and a `files` list (or mapping).
- Replacing an existing folder (`--overwrite`) is allowed only when it is empty or carries a
  marker and holds nothing else: files aedetect did not write are never deleted; the command is
  refused with their names instead. An existing file where a folder goes is refused.
- A file output replaces its target in one rename; a folder output sets the old folder aside,
  renames the new one in, then removes the old one, and puts it back if the rename fails: no
  hidden copy is left after success or failure (a removal that fails is an error naming it).
- The system refusing a write (a full disk, permissions, a read-only file system) is an
  `OutputError` naming the path and the system's reason (`writing`).
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

from aedetect.errors import AedetectError, ArtifactError, OutputError


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
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn the system refusing a write (ENOSPC, EACCES, EROFS...) into one `OutputError` that
    names `path` and the system's reason."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {os_reason(exc)}") from None


def os_reason(exc: OSError) -> str:
    """The system's reason for an OSError, in words ('No space left on device')."""
    if exc.errno and (exc.strerror is None or exc.strerror.startswith("[Errno")):
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    tmp = None
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(path, ".part")
            tmp = temp_beside(path, ".part")
            yield tmp
            apply_umask(tmp)
            os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False,
                  marker: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path`.

    An existing `path` is replaced only with `overwrite` and only when it is empty or holds
    nothing but what aedetect wrote there (`check_folder_output`, checked before and again just
    before the rename). `marker`: write `_aedetect-files.json` listing the files (False when the
    caller writes a marker of its own, the model folder's manifest.json)."""
    path = Path(path)
    check_folder_output(path, overwrite=overwrite)
    tmp = None
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(path, ".tmp")  # the half-written folder of a killed run
            if path.exists():
                remove_stale(path, ".old")  # an old folder a killed run had already replaced
            tmp = temp_beside(path, ".tmp", folder=True)
            yield tmp
            if marker:
                mark_folder(tmp)
            apply_umask(tmp)  # mkdtemp made it 0700: readable per umask, like any new folder
            check_folder_output(path, overwrite=overwrite)  # nothing arrived there meanwhile
            _replace_folder(tmp, path)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_folder(new: Path, path: Path) -> None:
    """Rename `new` onto `path`; an existing `path` is set aside first, removed after, and put
    back if the rename fails."""
    if not path.exists():
        os.replace(new, path)
        return
    old = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.old")  # see remove_stale
    os.replace(path, old)  # a rename: nothing is copied
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    try:
        shutil.rmtree(old)
    except OSError as exc:
        raise OutputError(f"{path} was written, but its old version, set aside as {old}, could "
                          f"not be removed ({os_reason(exc)}); remove it") from None


# -- which folders aedetect wrote -----------------------------------------------------------------
MARKER_FILE = "_aedetect-files.json"  # "_": Parquet and shard readers skip it, like _SUCCESS
MARKERS = ("manifest.json", MARKER_FILE)  # the model folder's manifest (store.folder), any other
MAX_MARKER_BYTES = 64 << 20
SHOWN = 5  # names listed in an error about a folder's files


def files_under(folder: str | os.PathLike) -> list[str]:
    """Every file (and link) under `folder`, as sorted relative POSIX paths."""
    folder = Path(folder)
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / name).as_posix() for name in files]
        out += [(rel / d).as_posix() for d in dirs if (Path(root) / d).is_symlink()]
    return sorted(out)


def mark_folder(folder: str | os.PathLike) -> Path:
    """Write `_aedetect-files.json` in `folder`, listing every file in it: the folder is
    aedetect's, and `--overwrite` may replace it."""
    import json

    path = Path(folder) / MARKER_FILE
    files = [f for f in files_under(folder) if f != MARKER_FILE]
    with writing(path):
        path.write_text(json.dumps({"format": "aedetect-files", "files": files}, indent=2) + "\n")
    return path


def marked_files(folder: str | os.PathLike) -> set[str] | None:
    """The files aedetect wrote in `folder`, by its marker (the marker included), or None when
    it carries no marker."""
    import json

    for name in MARKERS:
        path = Path(folder) / name
        try:
            if not path.is_file() or path.stat().st_size > MAX_MARKER_BYTES:
                continue
            raw = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(raw, dict) or not str(raw.get("format", "")).startswith("aedetect"):
            continue
        listed = raw.get("files")
        if isinstance(listed, (list, dict)) and all(isinstance(f, str) for f in listed):
            return {*listed, name}
    return None


def aedetect_folder_above(path: str | os.PathLike) -> Path | None:
    """The nearest folder above `path` that aedetect wrote (it carries a marker), or None."""
    for parent in Path(os.path.realpath(path)).parents:
        if marked_files(parent) is not None:
            return parent
    return None


def _names(files: list[str]) -> str:
    more = f" and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
    return ", ".join(files[:SHOWN]) + more


def check_folder_output(path: str | os.PathLike, *, overwrite: bool = False,
                        option: str = "--out") -> Path:
    """Refuse to replace what is not aedetect's: an existing `path` must be a folder, `overwrite`
    must be given, and it must be empty or carry a marker and hold nothing else."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return path
    if path.is_symlink():
        raise OutputError(f"{option} {path} is a link; give the folder itself or another {option}")
    if not path.is_dir():
        raise OutputError(f"{option} {path} is a file, not a folder aedetect wrote; choose another "
                          f"{option}")
    if not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it")
    present = files_under(path)
    if not present:
        return path
    ours = marked_files(path)
    if ours is None:
        raise OutputError(f"{option} {path} is not a folder aedetect wrote; it holds "
                          f"{_names(present)}; choose another {option}")
    foreign = [f for f in present if f not in ours]
    if foreign:
        raise OutputError(f"{option} {path} holds files aedetect did not write there: "
                          f"{_names(foreign)}; --overwrite would delete them: move them or "
                          f"choose another {option}")
    return path


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or child.is_relative_to(parent)


def check_output(out: str | os.PathLike, *, inputs=(), folders=(), overwrite: bool = False,
                 folder: bool = False, what: str = "output", option: str = "--out") -> Path:
    """The one rule for every output, checked before any work starts (module docstring).

    `inputs`: the files or folders the command reads; `folders`: the folders it reads (model
    folders); None entries are skipped. `folder`: the output is a folder (else a file).
    `overwrite`: an existing output may be replaced (a folder only if aedetect wrote it).
    """
    out = Path(out)
    real = Path(os.path.realpath(out))
    for kind, paths in (("input", inputs), ("model folder", folders)):
        for given in paths:
            if given is None:
                continue
            given = Path(given)
            src = Path(os.path.realpath(given))
            label = f"the {kind}" if kind != "input" else \
                ("the input folder" if given.is_dir() else "the input file")
            if same_file(out, given):
                raise OutputError(f"{option} {out} is {label} {given}: writing there would destroy "
                                  f"it; choose another {option}")
            if _inside(real, src):
                raise OutputError(f"{option} {out} lies inside {label} {given}: writing there "
                                  f"would change it; choose another {option}")
            if _inside(src, real):
                raise OutputError(f"{option} {out} holds {label} {given}: replacing it would delete "
                                  f"it; choose another {option}")
    above = aedetect_folder_above(out)
    if above is not None:
        raise OutputError(f"{option} {out} lies inside {above}, a folder aedetect wrote; writing "
                          f"there would break it; choose another {option}")
    if folder:
        check_folder_output(out, overwrite=overwrite, option=option)
    elif out.is_dir():
        raise OutputError(f"{option} {out} is a folder; give a file name")
    elif out.exists() and not overwrite:
        raise OutputError(f"{out} already exists; pass --overwrite to replace it")
    return check_output_path(out, what=what)


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
        raise OutputError(f"cannot write {what} {path}: {ancestor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".aedetect-write-check.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {ancestor}: {os_reason(exc)}") from None
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
        raise OutputError(f"--out {out} is the input file {data}: writing the scores there would "
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
