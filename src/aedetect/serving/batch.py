"""Batch scoring of files larger than memory: stream CSV/Parquet in chunks, write atomically.

Memory stays bounded by the chunk, not the file: each chunk is read, checked, scored and written
before the next is read. Output goes to a temporary file in the output folder and is renamed into
place at the end, so an interrupted run (Ctrl-C, SIGTERM) leaves no partial output. Bad rows
either stop the run (`on_bad_rows="error"`, naming file, row and reason) or go, with their reason,
to a side file (`"skip"`); none is silently dropped. Row numbers are 1-based data rows.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    import pandas as pd

from aedetect.data.arrow import parse_rows
from aedetect.data.io import check_column_names, check_input_file, compression, parquet, short_error, table_format
from aedetect.errors import DataError
from aedetect.files import (
    apply_umask,
    check_output_path,
    refuse_overwriting_input,
    remove_stale,
    sigterm_raises,
    temp_beside,
    writing,
)

BadRows = Literal["error", "skip"]
Progress = Callable[[int, float | None], None]  # (rows read so far, fraction of the file done)


@dataclass
class ScoreSummary:
    output: Path
    rows_read: int
    rows_scored: int
    rows_flagged: int
    rows_skipped: int
    bad_rows_file: Path | None
    threshold: float
    seconds: float
    ignored_columns: list[str] = field(default_factory=list)  # in the file, unknown to the model
    stale_removed: tuple[Path, ...] = ()  # temporary files of an earlier, killed run
    promise: dict | None = None  # the flagged share the model promises (`promised_share`)
    drivers: dict[str, int] = field(default_factory=dict)  # flagged rows per top-reason column
    labels_warning: str | None = None  # label-based risk without the file's labels (`_History.labels_warning`)
    history_warning: str | None = None  # the file starts long after its history ends (`history.gap_warning`)
    history_state: object = None  # a history model's `HistoryState` after the file's rows
    verdicts: tuple[int, int, str] | None = None  # (rows given a verdict, verdicts, the file's id column)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else float("nan")

    @property
    def share_warning(self) -> str | None:
        """Set when the flagged share of the scored rows is over 10 times the promise."""
        from aedetect.monitoring.reference import share_warning

        return share_warning(self.rows_flagged, self.rows_scored, self.promise, self.drivers)


def bad_rows_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".bad-rows.csv")


# -- reading ----------------------------------------------------------------------------------
class _Source:
    """Chunks of a CSV or Parquet file, with the CSV rows the parser could not split.

    CSV is cut into byte blocks at line ends (never inside a quoted value) by this class and each
    block is parsed on its own: pyarrow's streaming CSV reader reads ahead without limit on a
    fast disk, so it would hold most of a large file in memory. Yields (table, bad rows), where a
    bad row is (1-based data row within the chunk, reason).
    """

    def __init__(self, path: Path, features: list[str], chunk_rows: int, numbers: frozenset[str] = frozenset()):
        check_input_file(path)
        self.path, self.fmt, self._numbers = path, table_format(path), numbers
        self.size = path.stat().st_size
        if self.size == 0:
            raise DataError(f"{path}: the file is empty")
        try:
            if self.fmt == "csv":
                self._raw = open(path, "rb")
                codec = compression(path)
                self._file = _Lines(pa.CompressedInputStream(self._raw, codec)) if codec else self._raw
                self._header = self._file.readline()
                self._block = _block_size(path, chunk_rows, codec)
                # A plain file is read into one buffer that holds the header and then a block of
                # lines, reused chunk after chunk: no copy of a chunk's bytes, no fresh memory
                # per chunk (a compressed stream goes line by line through `_Lines`).
                self._buf = None if codec else bytearray(len(self._header) + self._block + (1 << 16))
                if self._buf is not None:
                    self._buf[:len(self._header)] = self._header
                self._cut = self._end = len(self._header)  # the last chunk's end, and the bytes read
                # Number columns are typed by the reader; a chunk where one does not parse is
                # read again with them as text, so the per-value rules name the bad value.
                self._types = {c: pa.string() for c in features}
                self._first = self._read_chunk()
                self.schema = self._first[0].schema
                self._types = {**dict(zip(self.schema.names, self.schema.types, strict=True)),
                               **{c: pa.string() for c in features}}
            else:
                self._pf = parquet().ParquetFile(path)
                self.schema = self._pf.schema_arrow
                self._reader = self._pf.iter_batches(batch_size=chunk_rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise DataError(f"{path}: cannot read as {self.fmt.upper()}: {short_error(exc)}") from None
        check_column_names(self.schema.names, path)

    def _lines(self) -> pa.Buffer | None:
        """The header and the next block of whole lines, never cut inside a quoted value; None
        at the end of the file."""
        buf = self._buf
        if buf is None:
            data = self._file.read(self._block)
            return None if not data and self._first_done() else self._whole(data)
        h = len(self._header)
        rest = self._end - self._cut  # the last block's partial line goes first
        buf[h:h + rest] = buf[self._cut:self._end]
        start = h + rest
        want = min(self._block, len(buf) - start)
        if want < self._block // 2:  # lines longer than the buffer's slack: read them as bytes
            self._cut = self._end = h
            return self._whole(bytes(buf[h:start]) + self._file.read(self._block))
        got = self._file.readinto(memoryview(buf)[start:start + want])
        end = start + got
        if end == h and self._first_done():
            return None
        cut = end if got < want else buf.rfind(b"\n", h, end) + 1  # the file's end: all of it
        self._cut, self._end = h, h
        if cut <= h or buf.count(b'"', h, cut) % 2:  # no whole line, or the cut in a quoted value
            return self._whole(bytes(buf[h:end]))
        self._cut, self._end = cut, end
        return pa.py_buffer(memoryview(buf)[:cut])  # the CSV reader copies what it keeps

    def _whole(self, data: bytes) -> pa.Buffer:
        """The header and `data` read on to the end of its line and of any quoted value."""
        if data and not data.endswith(b"\n"):
            data += self._file.readline()
        while data.count(b'"') % 2:  # the cut fell inside a quoted value: read to its end
            more = self._file.readline()
            if not more:
                break
            data += more
        return pa.py_buffer(self._header + data)

    def _read_chunk(self) -> tuple[pa.Table, list] | None:
        buffer = self._lines()
        if buffer is None:
            return None
        try:
            table, bad = self._parse(buffer, {**self._types, **dict.fromkeys(self._numbers, pa.float64())})
        except pa.ArrowInvalid:  # a number column holds something that is no number
            return self._parse(buffer, self._types)
        # The reader takes "NaN" and "inf" as numbers; the rules refuse them (a gap is an empty
        # cell, never the text NaN), naming the text as written: read such a chunk as text.
        if any(pc.all(pc.is_finite(table.column(i))).as_py() is False  # None: only gaps
               for i, c in enumerate(table.column_names) if c in self._numbers):
            return self._parse(buffer, self._types)
        return table, bad

    def _parse(self, buffer, types: dict) -> tuple[pa.Table, list]:
        bad: list = []

        def on_invalid(row) -> str:
            line = row.number - 1 if row.number else 0  # the header is line 1
            bad.append((line, f"expected {row.expected_columns} fields, found {row.actual_columns}: "
                              f"{row.text!r}"))
            return "skip"

        table = pacsv.read_csv(
            buffer,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=buffer.size + 1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                 null_values=[""]))
        return table.combine_chunks(), bad

    def _first_done(self) -> bool:
        return hasattr(self, "schema")

    def fraction_done(self, rows: int) -> float | None:
        if self.fmt == "csv":
            return min(self._raw.tell() / self.size, 1.0)
        total = self._pf.metadata.num_rows
        return min(rows / total, 1.0) if total else None

    def __iter__(self) -> Iterator[tuple[pa.Table | pa.RecordBatch, list]]:
        if self.fmt == "parquet":
            yield from ((batch, []) for batch in self._reader)
            return
        chunk, self._first = self._first, None
        while chunk is not None:
            if chunk[0].num_rows or chunk[1]:
                yield chunk
            try:
                chunk = self._read_chunk()
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataError(f"{self.path}: cannot read as CSV: {short_error(exc)}") from None

    def close(self) -> None:
        if self.fmt == "csv":
            self._file.close()
            self._raw.close()


class _Lines:
    """`read` and `readline` over a decompressing stream (pyarrow's has no `readline`)."""

    def __init__(self, stream):
        self._stream, self._buf = stream, b""

    def _fill(self, n: int) -> bool:
        more = self._stream.read(max(n, 1 << 16))
        self._buf += more
        return bool(more)

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and self._fill(n - len(self._buf)):
            pass
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readline(self) -> bytes:
        while b"\n" not in self._buf and self._fill(1 << 16):
            pass
        end = self._buf.find(b"\n") + 1 or len(self._buf)
        out, self._buf = self._buf[:end], self._buf[end:]
        return out

    def close(self) -> None:
        self._stream.close()


def _block_size(path: Path, chunk_rows: int, codec: str | None = None) -> int:
    """Bytes per CSV block for about `chunk_rows` rows, from the length of the first lines."""
    with pa.input_stream(str(path), compression=codec) as f:
        head = f.read(1 << 20)
    lines = max(head.count(b"\n") - 1, 1)
    per_row = max(len(head) // (lines + 1), 1)
    return int(min(max(chunk_rows * per_row, 1 << 12), 1 << 30))


# -- writing ----------------------------------------------------------------------------------
class _AtomicWriter:
    """A CSV or Parquet writer to a temporary file, renamed onto `path` by `commit`."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self._writer = path, fmt, None
        self.tmp = temp_beside(path, ".part")

    def write(self, table: pa.Table) -> None:
        with writing(self.path):  # a full disk names the output, not a temporary file
            if self._writer is None:
                cls = pacsv.CSVWriter if self.fmt == "csv" else parquet().ParquetWriter
                self._writer = cls(str(self.tmp), table.schema)
            self._writer.write_table(table)

    def commit(self, empty_schema: pa.Schema) -> None:
        if self._writer is None:
            self.write(empty_schema.empty_table())
        with writing(self.path):
            self._writer.close()
            apply_umask(self.tmp)
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the file is removed anyway
                pass
        self.tmp.unlink(missing_ok=True)


# -- scoring ----------------------------------------------------------------------------------
_DONE = object()


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Produce `items` in a background thread, at most `depth` ahead of the consumer.

    Reading and parsing the next chunk (pyarrow, which releases the GIL) then overlaps with
    scoring the current one (TensorFlow and NumPy, which release it too). Memory stays bounded
    by `depth` + 1 chunks. An exception in the producer is raised in the consumer, in order.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((False, exc))

    thread = threading.Thread(target=work, name="aedetect-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _scored_table(det, batch, x, rows, keep_cols, features, top_k, drivers=None, numbers=frozenset()) -> pa.Table:
    """Scores, flags and the `top_k` input columns behind each score, with their values;
    `drivers` (a Counter) counts the flagged rows by their first column. Kept `numbers`
    columns are written as the model read them (float64, whether the chunk was read typed or
    as text), other kept columns as the file holds them."""
    from aedetect.serving.explain import top_columns

    scores, contrib = det.score_matrix(x)
    cols: dict[str, pa.Array] = {"row": pa.array(rows, pa.int64())}
    for c in keep_cols:
        if c not in numbers:
            cols[c] = batch.column(c)
        else:
            cols[c] = pa.array(x[:, features.index(c)] if isinstance(x, np.ndarray) else np.asarray(x[c], "float64"))
    cols["score"] = pa.array(scores, pa.float64())
    flags = scores > det.threshold_
    cols["flag"] = pa.array(flags.astype("int8"), pa.int8())
    if top_k > 0:
        names, values, reasons = top_columns(det.preprocessor_, x, contrib, top_k, arrow=True)
        for i in range(names.shape[1]):
            cols[f"top{i + 1}_feature"] = pa.array(names[:, i], pa.string())
            cols[f"top{i + 1}_reason"] = reasons[i]
            cols[f"top{i + 1}_contribution"] = pa.array(values[:, i], pa.float64())
    if drivers is not None and flags.any():
        if top_k > 0:  # the first reason of each flagged row, as written above
            drivers.update(names[flags, 0].tolist())
        else:
            picked = x[flags] if isinstance(x, np.ndarray) else x[flags].reset_index(drop=True)
            drivers.update(top_columns(det.preprocessor_, picked, contrib[flags], 1)[0][:, 0].tolist())
    return pa.table(cols)


def _output_schema(schema: pa.Schema, keep, numbers, top_k: int, n_out: int) -> pa.Schema:
    """The columns `_scored_table` writes, for an output in which no row could be scored."""
    fields = [("row", pa.int64())]
    fields += [(c, pa.float64() if c in numbers else schema.field(c).type) for c in keep]
    fields += [("score", pa.float64()), ("flag", pa.int8())]
    for i in range(min(top_k, n_out)):  # as `_scored_table` writes them
        fields += [(f"top{i + 1}_feature", pa.string()), (f"top{i + 1}_reason", pa.string()),
                   (f"top{i + 1}_contribution", pa.float64())]
    return pa.schema(fields)


def score_file(
    detector,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    id_columns: list[str] | tuple[str, ...] = (),
    all_columns: bool = False,
    top_k: int = 3,
    chunk_rows: int = 50_000,
    on_bad_rows: BadRows = "error",
    progress: Progress | None = None,
    reference=None,
    on_flagged: Callable[[pd.DataFrame], None] | None = None,
    verdicts: pd.DataFrame | None = None,
    verdicts_id_column: str | None = None,
    history_state=None,
    history_source: str = "the model's training data",
) -> ScoreSummary:
    """Score `data` chunk by chunk with `detector` and write `out` (.csv or .parquet).

    Output columns: `row` (1-based data row), the id columns (or every input column with
    `all_columns`), `score`, `flag` and the `top_k` worst-reconstructed features with their errors.
    The summary's `share_warning` compares the flagged share with the promise: `reference`'s
    (the model folder's `load_reference`), else the threshold rule's own share.
    `on_flagged` is called with each chunk's flagged rows (every input column, the history
    features, score, flag and the top-k columns), e.g. to write them to the review store.
    `verdicts` (transaction_id, label: `aedetect.data.labels.read_labels`, `AlertStore.labels()`)
    give a label-aware model's label-based risk the labels of the rows they name, found by the
    file's `verdicts_id_column` (default: transaction_id, else the model's one id column); a
    verdict overrides the file's label column. `history_state`: a history model's
    `HistoryState` to continue from instead of the model's own (the state after an earlier file;
    `history_source` names it in the warning about a gap); the summary's `history_state` is the
    state after this file.
    """
    from collections import Counter

    from aedetect.monitoring.reference import promised_share

    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip'; got {on_bad_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1; got {chunk_rows}")
    data, out = Path(data), Path(out)
    out_fmt = table_format(out)
    for target in (out, bad_rows_path(out)):
        refuse_overwriting_input(data, target)
    check_output_path(out)
    features = list(detector.feature_names_in_)
    start = time.perf_counter()
    history = _History(detector, data, history_state, history_source)
    table_model = getattr(detector, "schema", None) is not None
    if verdicts is not None:
        history.take_verdicts(verdicts)
    numbers = _number_columns(detector, table_model)
    source = _Source(data, history.read, chunk_rows, numbers)
    names = source.schema.names
    missing = [c for c in history.read + list(id_columns) if c not in names]
    if verdicts is not None and not missing:
        try:
            history.find_verdicts(names, verdicts_id_column)
        except DataError:
            source.close()
            raise
    if missing:
        source.close()
        raise DataError(f"{data}: missing column(s) {missing}; the model needs {features}"
                        + (f" and id column(s) {list(id_columns)}" if id_columns else ""))
    known = detector.dataset_schema.names if table_model else features
    ignored = [c for c in names if c not in known and c not in id_columns]
    keep = names if all_columns else list(id_columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    stale = remove_stale(out, ".part") + remove_stale(bad_rows_path(out), ".part")
    # pyarrow imports its pandas integration on the first array it builds from NumPy; do that
    # now, before the temporary files exist. A Ctrl-C or SIGTERM that lands inside that import
    # (an eval() in a namedtuple) is handled here, but CPython still remembers it and ends the
    # process by SIGINT instead of our exit status 130.
    pa.array(np.zeros(0, dtype=bool))
    writer = side = None
    side_schema = pa.schema([("row", pa.int64()), ("reason", pa.string())]
                            + [(c, pa.string()) for c in names])
    n_read = n_scored = n_flagged = n_skipped = 0
    drivers: Counter = Counter()
    out_schema = None
    try:
        # BLAS on one thread for the whole run: the scorer runs its blocks on every core itself,
        # and a BLAS pool woken by any product in between spins on the cores the scoring needs
        # (a fifth of the process's CPU time on the ULB file).
        with sigterm_raises(), threadpool_limits(1, user_api="blas"):  # before the temporary files
            writer = _AtomicWriter(out, out_fmt)  # exist, so `kill` cannot orphan one
            side = _AtomicWriter(bad_rows_path(out), "csv") if on_bad_rows == "skip" else None
            for batch, parse_bad in prefetch(iter(source), depth=1):
                n = batch.num_rows
                bad_nums = np.array([n_read + line for line, _ in parse_bad], "int64")
                rows = np.arange(n_read + 1, n_read + n + len(parse_bad) + 1)
                rows = rows[~np.isin(rows, bad_nums)][:n]
                passed = [(n_read + line, why) for line, why in parse_bad]
                x, reasons = parse_rows(batch, features, getattr(detector, "preprocessor_", None),
                                        table=table_model)
                x, reasons = history.add(batch, x, rows, reasons)
                bad = reasons != None  # noqa: E711
                if on_bad_rows == "error" and (passed or bad.any()):
                    raise DataError(_first_problem(data, passed, rows, reasons))
                if side is not None and (passed or bad.any()):
                    side.write(_bad_table(batch, bad, rows, reasons, passed, side_schema))
                n_skipped += int(bad.sum()) + len(passed)
                good = ~bad
                if good.any():
                    if good.all():  # the usual chunk: nothing to filter out
                        x_good, batch_good = x, batch
                    else:
                        x_good = x[good] if isinstance(x, np.ndarray) else x[good].reset_index(drop=True)
                        batch_good = batch.filter(pa.array(good))
                    table = _scored_table(detector, batch_good, x_good, rows[good],
                                          keep, features, top_k, drivers, numbers)
                    out_schema = table.schema
                    writer.write(table)
                    if on_flagged is not None:
                        _hand_flagged(on_flagged, batch_good, x_good, table, features, history)
                    n_scored += int(good.sum())
                    n_flagged += int(table.column("flag").to_numpy().sum())
                n_read += n + len(passed)
                if progress is not None:
                    progress(n_read, source.fraction_done(n_read))
            if n_read == 0:
                raise DataError(f"{data}: the file has no data rows")
            writer.commit(out_schema or _output_schema(source.schema, keep, numbers, top_k,
                                                       len(detector.feature_names_out_)))
            if side is not None:
                side.commit(side_schema)
    except BaseException:
        for w in (writer, side):
            if w is not None:
                w.discard()
        raise
    finally:
        source.close()
    threshold = getattr(detector, "threshold", None) or getattr(getattr(detector, "manifest_", None),
                                                                "threshold", None)
    return ScoreSummary(out, n_read, n_scored, n_flagged, n_skipped,
                        side.path if side is not None else None, float(detector.threshold_),
                        time.perf_counter() - start, ignored_columns=ignored, stale_removed=tuple(stale),
                        promise=promised_share(reference, threshold) if threshold is not None else None,
                        drivers=dict(drivers), labels_warning=history.labels_warning(names),
                        history_warning=history.gap_warning,
                        history_state=history.state if history.schema is not None else None,
                        verdicts=None if history.verdicts is None else
                        (history.matched, len(history.verdicts), history.verdicts_by))


def _number_columns(detector, table_model: bool) -> frozenset[str]:
    """The input columns the model reads as plain numbers: the CSV reader may type them."""
    pre = getattr(detector, "preprocessor_", None)
    if not table_model or pre is None:
        return frozenset(detector.feature_names_in_)
    return frozenset(b["column"] for b in pre.blocks if b["kind"] not in ("onehot", "frequency", "categorical")
                     and not b.get("datetime") and not b.get("boolean") and not b.get("history"))


def needed_columns(detector) -> list[str]:
    """The columns a file needs for `detector`: its features, or for a model with entity history
    the features it reads and the columns the history is computed from (time, entities, amount)."""
    return _History(detector, Path()).read


def score_table(detector, table: pa.Table, *, top_k: int = 3, source: str = "input") -> pa.Table:
    """An in-memory table scored as `score_file` scores a file holding its rows (in one chunk):
    `score`, `flag` and the top-k columns, one row per input row in order, without `row`.

    A model with entity history computes the rows' history after the model's saved state, as
    `aedetect score` does for the first chunk of a file: the rows of one table see each other
    and the state, nothing from an earlier call. A row that cannot be scored raises DataError
    with its 1-based row number and reason (`source` names the table), as `--on-bad-rows error`
    does; no rows give no rows."""
    features = list(detector.feature_names_in_)
    history = _History(detector, Path(source))
    missing = [c for c in history.read if c not in table.column_names]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; the model needs {history.read}")
    rows = np.arange(1, table.num_rows + 1)
    x, reasons = parse_rows(table, features, getattr(detector, "preprocessor_", None),
                            table=getattr(detector, "schema", None) is not None)
    x, reasons = history.add(table, x, rows, reasons)
    bad = np.flatnonzero(reasons != None)  # noqa: E711 (element-wise on an object array)
    if bad.size:
        raise DataError(f"{source}: row {int(rows[bad[0]])}: {reasons[bad[0]]}"
                        + (f" ({bad.size} rows cannot be scored)" if bad.size > 1 else ""))
    return _scored_table(detector, table, x, rows, [], features, top_k).drop_columns(["row"])


def _hand_flagged(on_flagged, batch, x, table: pa.Table, features: list[str], history) -> None:
    """The flagged rows of one chunk, as `score_file`'s `on_flagged` receives them."""
    import pandas as pd

    flags = table.column("flag").to_numpy().astype(bool)
    if not flags.any():
        return
    rows = batch.filter(pa.array(flags)).to_pandas()
    derived = history.schema.history_features if history.schema is not None else []
    for c in derived:
        rows[c] = np.asarray(x[c])[flags] if not isinstance(x, np.ndarray) else x[flags, features.index(c)]
    scored = table.filter(pa.array(flags)).drop_columns(
        [c for c in table.column_names if c in rows.columns]).to_pandas()
    on_flagged(pd.concat([rows, scored], axis=1))


class _History:
    """Entity history features of a file, chunk by chunk: the first chunk continues from the
    model's state, each later one from the chunks before it (`aedetect.data.history`). The rows
    must come in time order across chunks, or a chunk could not see its past."""

    def __init__(self, detector, data: Path, state=None, source: str = "the model's training data"):
        schema = detector.dataset_schema if getattr(detector, "schema", None) is not None else None
        self.schema = schema if schema is not None and schema.history is not None else None
        self.data = data
        self.verdicts = self.verdicts_by = None  # label -> per transaction id; the file's id column
        self.matched = 0  # rows given a verdict
        self.gap_warning: str | None = None  # set by the first chunk (`gap_warning`)
        features = list(detector.feature_names_in_)
        if self.schema is None:
            self.read = features
            return
        from aedetect.data.history import input_columns

        derived = set(self.schema.computed_features)
        self.read = [c for c in features if c not in derived]
        self.read += [c for c in input_columns(self.schema) if c not in self.read]
        self.state = state if state is not None else getattr(detector, "history_state_", None)
        self.source = source  # what the state is, for `gap_warning`
        self.continues = False
        self.latest = -np.inf

    def take_verdicts(self, verdicts: pd.DataFrame) -> None:
        """Verdicts (`check_labels`' columns) for the label-based risk; refused for a model that
        reads no labels."""
        from aedetect.data.labels import check_labels

        if self.schema is None or self.schema.history.label_delay is None:
            raise DataError("the model reads no labels (it has no label-based risk: train it with "
                            "--use-labels and --entity-columns)")
        self.verdicts = check_labels(verdicts, "the verdicts")

    def find_verdicts(self, names: list[str], id_column: str | None) -> None:
        """The file's id column (of `names`) the verdicts are found by."""
        import pandas as pd

        from aedetect.data.labels import labels_id_column

        self.verdicts_by = labels_id_column(pd.DataFrame(columns=names), self.schema, id_column,
                                            source=str(self.data))

    def labels_warning(self, names: list[str]) -> str | None:
        """Set when the model has label-based risk and the file (columns `names`) has no label
        column: its rows' fraud rates then read only the labels of the model's state."""
        spec = self.schema.history if self.schema is not None else None
        if spec is None or spec.label_delay is None or self.schema.label in names or self.verdicts is not None:
            return None
        days = spec.label_delay / 86_400
        return (f"the file has no {self.schema.label!r} column: the label-based risk features read only the "
                f"labels of the model's training data, so rows more than {days:g} days after its end see "
                f"fewer of them and rows {days + max(spec.label_windows) / 86_400:g} days after it none; give "
                "the file its known labels (1 fraud, 0 normal, empty where not known)")

    def add(self, batch: pa.RecordBatch, x, rows: np.ndarray, reasons: np.ndarray):
        """`x` with the history columns, and `reasons` with a reason for each good row that has
        no history (an empty entity value or amount)."""
        if self.schema is None:
            return x, reasons
        from aedetect.data.history import attach_history, compute, input_columns, table_inputs, table_labels

        cols = input_columns(self.schema)
        # the label column too, when the file has it (label-based risk: the labels known by now),
        # and the id column the verdicts are found by
        label = [c for c in [self.schema.label] if self.schema.history.label_delay is not None
                 and c in batch.schema.names and c not in cols]
        by = [c for c in [self.verdicts_by] if c is not None and c not in cols + label]
        frame = pa.table({c: batch.column(c) for c in cols + label + by}).to_pandas()
        t, entities, amount = table_inputs(frame, self.schema)  # read once: the check and the history
        early = np.flatnonzero(t < self.latest)
        if early.size:
            raise DataError(f"{self.data}: row {int(rows[early[0]])}: time {frame.iloc[early[0]][cols[0]]!r} is "
                            "before an earlier chunk's rows; history features need the file in time "
                            "order (sort it by time, or raise --chunk-rows above its row count)")
        if np.isfinite(t).any():
            self.latest = max(self.latest, float(np.nanmax(t)))
            if not self.continues:
                from aedetect.data.history import gap_warning, state_times

                self.gap_warning = gap_warning(state_times(self.state), float(np.nanmin(t)), self.schema,
                                               source=str(self.data), continues_from=self.source)
        labels = table_labels(frame, self.schema)
        if self.verdicts_by is not None:  # a verdict overrides the file's label
            from aedetect.data.labels import row_verdicts

            given = row_verdicts(frame, self.verdicts_by, self.verdicts)
            self.matched += int((~np.isnan(given)).sum())
            labels = given if labels is None else np.where(np.isnan(given), labels, given)
        features, self.state = compute(t, entities, amount, self.schema.history.windows, self.state,
                                       continues=self.continues, labels=labels, **self.schema.history.options)
        self.continues = True
        return attach_history(x, reasons, features, self.schema)


def _first_problem(data: Path, passed: list, rows: np.ndarray, reasons: np.ndarray) -> str:
    candidates = list(passed)
    bad = np.flatnonzero(reasons != None)  # noqa: E711
    if bad.size:
        candidates.append((int(rows[bad[0]]), reasons[bad[0]]))
    row, reason = min(candidates)
    return (f"{data}: row {row}: {reason} (pass --on-bad-rows skip to write bad rows to a side "
            "file and score the rest)")


def _bad_table(batch, bad, rows, reasons, passed, schema) -> pa.Table:
    cols = {"row": list(rows[bad]) + [row for row, _ in passed],
            "reason": list(reasons[bad]) + [why for _, why in passed]}
    picked = batch.filter(pa.array(bad))
    for c in batch.schema.names:
        cols[c] = pc.cast(picked.column(c), pa.string()).to_pylist() + [None] * len(passed)
    return pa.table(cols, schema=schema)
