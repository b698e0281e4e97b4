"""Entity history for the REST service: each entity's recent rows, updated as transactions arrive.

A model with entity history features (`aedetect.data.history`) scores a transaction against what
its card, terminal... did before. Batch scoring carries one `HistoryState` through a file; the
service keeps the same rows in a `HistoryStore`, indexed by entity value, starting from the model
folder's state (the end of the training data) or from a file the service saved before:

- a request selects the stored rows of the entity values it names (card X's rows, terminal Y's
  rows: an entity's features read only its own rows), builds a small `HistoryState` from them
  and calls the one `compute` (`continues=True`) for its rows, in request order. A row older than
  an entity's latest stored row still gets the features of the rows before its time (`compute`
  orders by time);
- the request's rows are then stored with their new-pair flags, and rows older than the longest
  window before the newest time seen are dropped: memory stays bounded, and an entity idle for
  longer than the longest window disappears;
- a lock makes select, compute, score and store one step (the scoring route runs in a thread
  pool); a request that fails (a value the model refuses) stores nothing;
- a transaction whose `id` is already stored (a client's retry) is scored against the rows
  without its first occurrence and is not stored again; without an id, a retry counts twice.

`save(path)` writes the rows (and the transaction ids) to Parquet atomically; `load` reads them
back, so a restarted service continues where it stopped. One process only: several workers
would each see only their own transactions (see docs/serving.md).
"""

from __future__ import annotations

import heapq
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd

from aedetect.data.history import (
    Z_FLOOR,
    HistoryState,
    compute_arrays,
    gap_warning,
    hour_unusual,
    table_inputs,
    table_labels,
)
from aedetect.errors import ArtifactError, DataError
from aedetect.files import atomic_file, check_output_path

ID_COLUMN = "txid:"  # the transaction ids in a saved store (not part of a HistoryState)


def open_history(det, path: str | os.PathLike | None = None) -> HistoryStore | None:
    """The service's entity history: from the file `path` when it exists (saved by a previous
    run), else from the model folder's state; None for a model without history features."""
    schema = det.dataset_schema if getattr(det, "schema", None) is not None else None
    if schema is None or schema.history is None:
        if path is not None:
            raise DataError(f"history state {path}: the model has no entity history features")
        return None
    if path is not None:
        check_output_path(path, what="the history state")  # refused at start, not at the first save
        if os.path.exists(path):
            store = HistoryStore.load(schema, path)
            store.source = f"the history state {path}"
            return store
    return HistoryStore(schema, getattr(det, "history_state_", None))


def history_inputs(schema) -> dict[str, str]:
    """The columns entity history reads that the model does not (the entities; the time and
    amount when they are not features), each with how a request gives it: "category" (an id,
    text or an integer), "datetime" or "number"."""
    spec = getattr(schema, "history", None)
    if spec is None:
        return {}
    read = set(schema.input_features)
    out = {}
    for name in [schema.time, *spec.entities, spec.amount]:
        if name is None or name in read or name in out:
            continue
        kind = schema.column(name).type
        out[name] = ("category" if name in spec.entities else
                     "datetime" if kind == "datetime" else "number")
    return out


class HistoryStore:
    """Per entity value, the rows of the last longest window (see the module docstring)."""

    def __init__(self, schema, state: HistoryState | None = None, ids=None):
        spec = schema.history
        if spec is None:
            raise DataError("the model has no entity history features")
        self.schema = schema
        self.entities = list(spec.entities)
        self.windows = sorted(float(w) for w in spec.windows)
        self.horizon = self.windows[-1]
        self.reach = spec.reach  # rows older than this before the newest are dropped
        self.options = spec.options
        self.label_windows = self.options["label_windows"]  # label-based risk, when not empty
        self.flags = [f"new:{e}:{o}" for e in self.entities for o in self.entities if o != e]
        self.columns = ["time", "amount", *self.entities, *self.flags, *(["label"] if self.label_windows else [])]
        self.hours = spec.hours
        self.features = pd.Index(spec.feature_names)  # built once, not per request
        self.lock = threading.Lock()
        self.newest = -math.inf
        self.source = "the model's training data"  # where the stored history comes from, in words
        self.gap_warning: str | None = None  # the first request came days after the stored history
        self._gap_checked = False
        self.changes = 0  # rows stored since the last save
        self._rows: dict[int, tuple] = {}  # row number -> values in `columns` order
        self._numbers: dict[int, tuple] = {}  # row number -> its time, amount, flags (and label): floats
        self._txid: dict[int, str] = {}  # row number -> transaction id, when it had one
        self._by_txid: dict[str, int] = {}
        self._index: dict[str, dict[object, dict[int, None]]] = {e: {} for e in self.entities}
        self._heap: list[tuple[float, int]] = []  # (time, row number): the oldest first
        self._next = 0
        self.start = state.start if state is not None else None  # when the history began
        if state is not None and len(state.rows):
            self._load_rows(state.rows, ids)

    # -- reading and writing ----------------------------------------------------------------
    @classmethod
    def load(cls, schema, path: str | os.PathLike) -> HistoryStore:
        """A store saved by `save`, or any `HistoryState` Parquet file of this model's history."""
        try:
            state = HistoryState.from_parquet(path)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: cannot read the history state ({exc})") from None
        rows = state.rows
        ids = rows.pop(ID_COLUMN) if ID_COLUMN in rows.columns else None
        return cls(schema, HistoryState(rows, state.start), ids)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the stored rows (and transaction ids) to Parquet in one atomic rename."""
        with self.lock:
            numbers = sorted(self._rows)
            values = [self._rows[r] for r in numbers]
            txids = [self._txid.get(r) for r in numbers]
            saved = self.changes
        frame = self._frame(values)
        frame[ID_COLUMN] = pd.Series(txids, dtype=object)
        with atomic_file(path) as tmp:
            HistoryState(frame, self.start).to_parquet(tmp)
        with self.lock:
            self.changes -= saved
        return Path(path)

    def state(self) -> HistoryState:
        """The stored rows as one `HistoryState` (what batch scoring would carry)."""
        with self.lock:
            return HistoryState(self._frame([self._rows[r] for r in sorted(self._rows)]), self.start)

    def __len__(self) -> int:
        return len(self._rows)

    def entity_values(self, entity: str) -> int:
        """How many values of `entity` have stored rows."""
        return len(self._index[entity])

    # -- scoring ----------------------------------------------------------------------------
    def add(self, df: pd.DataFrame, ids=None) -> pd.DataFrame:
        """The history features of the rows of `df` (time, entity and amount columns), stored."""
        with self.pending(df, ids) as features:
            return features

    @contextmanager
    def pending(self, df: pd.DataFrame, ids=None) -> Iterator[pd.DataFrame]:
        """Yield the history features of the rows of `df`; store the rows when the block ends
        without an exception. The store is locked for the whole block, so a request's scoring
        sees and leaves one consistent history."""
        time, entities, amount = table_inputs(df, self.schema)
        amount = np.zeros(len(df)) if amount is None else np.asarray(amount, dtype="float64")
        self._check(df, time, entities, amount)
        keys = [None if i is None else str(i) for i in (ids if ids is not None else [None] * len(df))]
        given = [k for k in keys if k is not None]
        if len(set(given)) != len(given):
            twice = next(k for k in given if given.count(k) > 1)
            raise DataError(f"id {twice!r} appears more than once in the request; a transaction "
                            "updates the entity history once")
        with self.lock:
            if not self._gap_checked and np.isfinite(time).any():
                self._check_gap(float(np.nanmin(time)))
            retried = {self._by_txid[k] for k in given if k in self._by_txid}
            one = self._one(float(time[0]), [entities[e].iloc[0] for e in self.entities], float(amount[0])) \
                if len(df) == 1 and not retried else None
            if one is not None:  # the usual request: one transaction, after its entities' stored rows
                features, row = one
                yield pd.DataFrame(features[None, :], columns=self.features, copy=False)
                self._store(row, keys[0])
                self.changes += 1
                self.start = row[0] if self.start is None else self.start
                self.newest = max(self.newest, row[0])
                self._drop_before(self.newest - self.reach)
                return
            past = self._select(entities, retried)
            matrix, columns, kept, start = compute_arrays(time, entities, amount, self.windows, past, self.start,
                                                          continues=True, labels=table_labels(df, self.schema),
                                                          **self.options)
            yield pd.DataFrame(matrix, columns=columns, copy=False)
            self._append(time, kept, start, keys)

    def _one(self, t: float, values: list, amount: float) -> tuple[np.ndarray, tuple] | None:
        """The features of one transaction whose entities have no stored row after it, and the
        row to store: `compute_arrays`' arithmetic for that one row (a window's sums over the
        entity's stored rows, the new-pair flags from the pair's latest row), without the
        features of every stored row it would compute on the way. None for any other case (a
        stored row later than `t`): the general path. `tests/test_history_service.py` holds the
        two to each other within 1e-9."""
        start = self.start if self.start is not None else t
        stamp = round(t * 1000)
        horizon = self.horizon
        groups = {}  # entity -> its value's stored rows, in `compute_arrays`' order (ms, then row)
        for e, v in zip(self.entities, values, strict=True):
            numbers = sorted(self._index[e].get(v, ()))
            # time, amount and the new-pair flags of each row, gathered in C
            picked = itemgetter(*numbers)(self._numbers) if numbers else ()
            values_of = np.array(picked if len(numbers) != 1 else [picked], dtype="float64").reshape(
                len(numbers), len(self.columns) - len(self.entities))
            numbers = np.array(numbers, dtype=np.int64)
            if len(numbers) and values_of[:, 0].max() > t:
                return None
            order = np.lexsort((numbers, np.round(values_of[:, 0] * 1000).astype("int64")))
            groups[e] = numbers[order], values_of[order]
        pair_new = {}
        for i, e in enumerate(self.entities):
            for o in self.entities[i + 1:]:  # a pair's flag is one for both orders
                common = np.intersect1d(groups[e][0], groups[o][0], assume_unique=True).tolist()
                latest = max(((self._rows[r][0], r) for r in common), default=None)
                pair_new[e, o] = pair_new[o, e] = 0.0 if latest is not None and t - latest[0] < horizon else 1.0
        out = []
        log_t = math.log1p(max(amount, 0.0))
        for e in self.entities:
            numbers, block = groups[e]
            times = block[:, 0]
            others = [o for o in self.entities if o != e]
            n = len(numbers)
            logs = np.log1p(np.maximum(block[:, 1], 0.0))
            first = logs[0] if n else log_t
            centred = logs - first
            centred_t = log_t - first
            cs = np.concatenate([[0.0], np.cumsum(centred)])
            cs2 = np.concatenate([[0.0], np.cumsum(centred**2)])
            stamps = np.round(times * 1000).astype("int64")
            cs_new = {o: np.concatenate([[0.0], np.cumsum(block[:, 2 + self.flags.index(f"new:{e}:{o}")])])
                      for o in others}
            seen = t - start
            for w in self.windows:
                q = int(np.searchsorted(stamps, stamp - round(w * 1000), side="right"))
                count = n - q
                mean_log = (cs[n] - cs[q]) / max(count, 1) if count > 0 else 0.0
                out += [count * (w / min(max(seen, min(w, 86_400.0)), w)),
                        centred_t - mean_log if count > 0 else 0.0]
                out += [cs_new[o][n] - cs_new[o][q] for o in others]
            n_long = max(count, 1)  # the longest window's, as `compute_arrays` leaves them
            mean = (cs[n] - cs[q]) / n_long
            spread = math.sqrt(max((cs2[n] - cs2[q]) / n_long - mean**2, 0.0))
            out.append((centred_t - mean) / max(spread, Z_FLOOR) if count >= 3 else 0.0)
            if self.hours:
                out.append(hour_unusual(t, times[q:]))
            out.append(min(t - times[-1], horizon) if n else horizon)
            out += [1.0 - pair_new[e, o] for o in others]
            if self.label_windows:  # the labelled rows in (t - delay - w, t - delay]
                labels = block[:, -1]
                known, fraud = (np.concatenate([[0.0], np.cumsum(v)]) for v in (~np.isnan(labels), labels == 1.0))
                end = stamp - round(self.options["label_delay"] * 1000)
                q_end = int(np.searchsorted(stamps, end, side="right"))
                for w in self.label_windows:
                    q_w = int(np.searchsorted(stamps, end - round(w * 1000), side="right"))
                    n_known, frauds = known[q_end] - known[q_w], fraud[q_end] - fraud[q_w]
                    out.append(frauds / n_known if n_known > 0 else 0.0)
                out.append(frauds)
        row = (t, amount, *values, *(pair_new[e, o] for e in self.entities for o in self.entities if o != e),
               *([np.nan] if self.label_windows else []))
        return np.array(out, dtype="float64"), row

    def set_labels(self, labels: dict) -> tuple[int, list]:
        """Give stored transactions their labels (id -> 1 fraud, 0 normal): verdicts that arrive
        after the scoring. Returns how many took one and the ids not held (never stored with that
        id, or dropped as older than the history keeps)."""
        if not self.label_windows:
            raise DataError("the model has no label-based risk features; it reads no labels")
        updated, not_held = 0, []
        with self.lock:
            for key, label in labels.items():
                r = self._by_txid.get(str(key))
                if r is None:
                    not_held.append(key)
                    continue
                self._rows[r] = (*self._rows[r][:-1], float(label))  # the label is the last column
                self._numbers[r] = (*self._numbers[r][:-1], float(label))
                updated += 1
            self.changes += updated
        return updated, not_held

    def _check_gap(self, first: float) -> None:
        """Once, at the first request: `gap_warning` against the stored rows, logged to the server's
        log (uvicorn's) and kept in `gap_warning` (/v1/model's "history")."""
        self._gap_checked = True
        times = np.fromiter((v[0] for v in self._numbers.values()), dtype="float64", count=len(self._numbers))
        self.gap_warning = gap_warning(
            times, first, self.schema, source="the first request", continues_from=self.source,
            advice="Start the service from a history state with those payments in it: `aedetect score "
                   "--history-state FILE` over them, then `aedetect serve --history-state FILE`")
        if self.gap_warning is not None:
            import logging

            logging.getLogger("uvicorn.error").warning(self.gap_warning)

    def _check(self, df, time, entities, amount) -> None:
        """Every row needs its time, entity values and amount: a row without them has no history."""
        spec = self.schema.history
        for col, bad in [(self.schema.time, ~np.isfinite(time)),
                         *[(e, pd.isna(entities[e].to_numpy())) for e in self.entities],
                         (spec.amount, ~np.isfinite(amount))]:
            if col is not None and bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"row {i + 1}: column {col!r} value {df[col].iloc[i]!r} is missing or "
                                "unreadable; history features need the time, entity and amount of "
                                "every transaction")

    def _select(self, entities: dict[str, pd.Series], skip: set[int]) -> dict[str, np.ndarray]:
        """The stored rows of the entity values named, by column (`compute_arrays`' `past`)."""
        numbers: set[int] = set()
        for e in self.entities:
            index = self._index[e]
            for value in set(entities[e]):
                numbers.update(index.get(value, ()))
        numbers -= skip
        rows = [self._rows[r] for r in sorted(numbers)]
        if not rows:
            return {}
        return {c: np.array(v, dtype=object if c in self.entities else "float64")
                for c, v in zip(self.columns, zip(*rows, strict=True), strict=True)}

    def _frame(self, values: list[tuple]) -> pd.DataFrame:
        if not values:
            frame = HistoryState.empty(self.entities).rows
            floats = [*self.flags, *(["label"] if self.label_windows else [])]
            return frame.assign(**{f: pd.Series(dtype="float64") for f in floats})[self.columns]
        frame = pd.DataFrame.from_records(values, columns=self.columns)
        for e in self.entities:
            frame[e] = frame[e].astype(object)
        return frame

    def _append(self, time: np.ndarray, after: dict[str, np.ndarray], start, keys: list) -> None:
        """Store the request's rows (with the flags `compute` gave them) and drop the old ones."""
        if self.start is None:
            self.start = start
        # `compute` keeps its rows in order, the request's last, less those a longest window
        # before the newest of them
        end = float(after["time"].max())
        kept = time > end - self.reach
        count = int(kept.sum())
        cols = [after[c][len(after["time"]) - count:] for c in self.columns]
        if not np.array_equal(cols[0], time[kept]):
            raise RuntimeError("history: the state after the request does not end with its rows")
        for j, key in enumerate(np.asarray(keys, dtype=object)[kept]):
            if key is None or key not in self._by_txid:  # a retry: its first occurrence stays
                self._store(tuple(c[j] for c in cols), key)
                self.changes += 1
        self.newest = max(self.newest, end)
        self._drop_before(self.newest - self.reach)

    def _store(self, row: tuple, key: str | None) -> None:
        r = self._next
        self._next += 1
        self._rows[r] = row
        self._numbers[r] = row[:2] + row[2 + len(self.entities):]  # time, amount, flags, label: `_one` reads these
        for e, value in zip(self.entities, row[2:2 + len(self.entities)], strict=True):
            self._index[e].setdefault(value, {})[r] = None
        if key is not None:
            self._txid[r] = key
            self._by_txid[key] = r
        heapq.heappush(self._heap, (float(row[0]), r))

    def _drop_before(self, limit: float) -> None:
        """Drop the rows at or before `limit` (outside every window of a later row)."""
        heap = self._heap
        while heap and heap[0][0] <= limit:
            _, r = heapq.heappop(heap)
            row = self._rows.pop(r)
            del self._numbers[r]
            for e, value in zip(self.entities, row[2:2 + len(self.entities)], strict=True):
                rows = self._index[e][value]
                del rows[r]
                if not rows:
                    del self._index[e][value]
            key = self._txid.pop(r, None)
            if key is not None:
                del self._by_txid[key]

    def _load_rows(self, rows: pd.DataFrame, ids) -> None:
        missing = [c for c in self.columns if c not in rows.columns]
        if missing:
            raise ArtifactError(f"the history state lacks column(s) {missing}; this model's history "
                                f"needs {self.columns}")
        rows = rows[self.columns].reset_index(drop=True)
        keys = [None] * len(rows) if ids is None else [None if pd.isna(k) else str(k) for k in ids]
        for e in self.entities:
            rows[e] = rows[e].astype(object)
        cols = [rows[c].to_numpy() for c in self.columns]
        for j in range(len(rows)):
            self._store(tuple(c[j] for c in cols), keys[j])
        self.newest = float(rows["time"].max())
        self._drop_before(self.newest - self.reach)
