"""Entity history features: what each card (terminal, customer...) did before this payment.

Fraud shows in behaviour more than in one row: a card spending four times its usual amount,
eight payments in ten minutes, a terminal suddenly serving many new cards. For each entity column
of `HistorySpec.entities` and each window (default 1 hour, 1 day, 7 days and 30 days) a row gets

  `<entity>.count_<w>`       payments of this entity in the window before the row (in the
                             first weeks of the history, scaled up to a whole window)
  `<entity>.amount_ratio_<w>` log1p(amount) - the mean of log1p(amount) of the entity's
                             payments in the window (0 when the window is empty): 1.4 is about
                             four times the entity's usual amount
and once per entity
  `<entity>.amount_z_<longest>` (log1p(amount) - its mean) / its standard deviation over the
                             entity's payments in the longest window (at least 0.1; 0 with
                             fewer than 3 payments): 4x the usual is far for a card that always
                             pays about the same, near for one whose amounts vary
  `<entity>.hour_unusual_<longest>` (with `HistorySpec.hours`, the default of new models) how far
                             the hour of day lies from the entity's hours over the longest
                             window: 1 - the mean cosine of the angle between this payment's
                             time of day and each earlier one's. 0 at its one usual hour, about
                             1 for an entity with no usual hour, up to 2 at the opposite hour
                             (0 with fewer than 3 payments): an account taken over pays at night
  `<entity>.since_last`      seconds since the entity's previous payment, capped at the longest
                             window (the cap when there is none)
and, when there are two or more entities, per pair (e.g. card and terminal)
  `<entity>.new_<other>_<w>` payments in the window at a counterparty the entity had not paid
                             with in the longest window before (new terminals per card, new
                             cards per terminal)
  `<entity>.<other>_seen`    1 when this pair occurred in the longest window before, else 0
and, in the label-aware mode (`HistorySpec.label_delay`: labels arrive late), per label window
  `<entity>.fraud_rate_<w>`  the share of fraud among the entity's labelled payments in the
                             window that ends `label_delay` before the row, (t - d - w, t - d]
                             (0 when none is labelled): a terminal that served frauds last week
  `<entity>.frauds_<w>`      (the longest label window) how many of them were fraud
A row's label is 1 (fraud), 0 (normal) or missing (not known: a scored file without its label
column, a transaction the service has no verdict for), which counts in neither.

Counts and seconds are heavy-tailed: the model reads them through log1p (`LOG_FEATURES`).

Strictly from the past: a row sees only rows earlier in time (a tie broken by order: an earlier
file, then the earlier row of the file). A window is (t - w, t). One function computes the
features for every engine (training, batch scoring, the service, Spark), so they agree.

State across files: `HistoryState` holds the rows of the last longest window (times, entity
values, amounts and each row's new-pair flags). Scoring a later file from the state of the
earlier one gives the features of scoring the two together; history before the new rows' first
time comes from the state, so scoring the training file again starts afresh. Entities idle
longer than the longest window drop out, which bounds the state.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aedetect.errors import DataError

DEFAULT_WINDOWS = (3_600.0, 86_400.0, 604_800.0, 2_592_000.0)
CHUNK_ROWS = 65_536  # sorted rows per block of a window's arithmetic
PARALLEL_ROWS = 100_000  # from this many rows, the entities' features are computed in threads
Z_FLOOR = 0.1  # the smallest spread of log1p(amount) a z-score divides by (a card paying one price)
_UNITS = ((86_400.0, "d"), (3_600.0, "h"), (60.0, "m"), (1.0, "s"))


def is_log_feature(name: str) -> bool:
    """Counts and seconds (read through log1p by the model), not the ratios and 0/1 flags."""
    tail = name.rsplit(".", 1)[-1]
    return tail.startswith(("count_", "new_", "frauds_")) or tail == "since_last"


def is_label_feature(name: str) -> bool:
    """The label-based risk columns (`<entity>.fraud_rate_<w>`, `<entity>.frauds_<w>`)."""
    return name.rsplit(".", 1)[-1].startswith(("fraud_rate_", "frauds_"))


def window_name(seconds: float) -> str:
    """1h, 1d, 7d, 30d, 10m, 90s."""
    for size, unit in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def feature_names(entities: list[str], windows, hours: bool = False, label_delay: float | None = None,
                  label_windows=()) -> list[str]:
    """The history columns, in the order they are added to a table (`hours`: with the hour of
    day against the entity's usual hours; `label_windows`: with the label-based risk, when
    `label_delay` is set)."""
    names = []
    longest = window_name(max(windows))
    label_windows = sorted(label_windows) if label_delay is not None else []
    for e in entities:
        others = [o for o in entities if o != e]
        for w in windows:
            names += [f"{e}.count_{window_name(w)}", f"{e}.amount_ratio_{window_name(w)}"]
            names += [f"{e}.new_{o}_{window_name(w)}" for o in others]
        names += [f"{e}.amount_z_{longest}"] + ([f"{e}.hour_unusual_{longest}"] if hours else [])
        names += [f"{e}.since_last"]
        names += [f"{e}.{o}_seen" for o in others]
        names += [f"{e}.fraud_rate_{window_name(w)}" for w in label_windows]
        names += [f"{e}.frauds_{window_name(label_windows[-1])}"] if label_windows else []
    return names


class HistoryState:
    """The rows of the last longest window (`HistorySpec.reach`): `time` (seconds), one column
    per entity (text), `amount`, `new:<e>:<o>` flags (1.0 when the row's pair e-o was new) and,
    with label-based risk, `label` (1.0, 0.0, NaN when not known).

    A state that `compute` returns keeps its entity values encoded (one integer code per row and
    the values by code), so that the next chunk of a file reads the codes instead of encoding a
    million strings again; `rows` builds the table when something reads it (saving, the service)."""

    def __init__(self, rows: pd.DataFrame | None, start: float | None = None, *, encoded: _Encoded | None = None):
        if rows is None and encoded is None:
            raise ValueError("a HistoryState needs its rows or their encoded form")
        self._rows, self._encoded = rows, encoded
        self.start = start  # when the history began: the first row's time (see `compute`)

    @property
    def rows(self) -> pd.DataFrame:
        if self._rows is None:
            self._rows = self._encoded.frame()
        return self._rows

    def __repr__(self) -> str:
        n = len(self._rows) if self._rows is not None else len(self._encoded.columns["time"])
        return f"HistoryState({n:,} rows, start={self.start!r})"

    @classmethod
    def empty(cls, entities: list[str]) -> HistoryState:
        cols = {"time": pd.Series(dtype="float64"), "amount": pd.Series(dtype="float64")}
        cols.update({e: pd.Series(dtype=object) for e in entities})
        return cls(pd.DataFrame(cols))

    def to_parquet(self, path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.rows, preserve_index=False)
        meta = {**(table.schema.metadata or {}), b"aedetect.history.start": repr(self.start).encode()}
        pq.write_table(table.replace_schema_metadata(meta), path)

    @classmethod
    def from_parquet(cls, path) -> HistoryState:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        start = (table.schema.metadata or {}).get(b"aedetect.history.start", b"None").decode()
        return cls(table.to_pandas(), None if start == "None" else float(start))


@dataclass
class _Encoded:
    """A state's rows with the entity values encoded: `columns` ("time", "amount", the
    "new:<e>:<o>" flags, "label") as arrays, and per entity `codes` (int64, one per row) into
    `values` (an object array of the distinct values)."""

    columns: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]

    def frame(self) -> pd.DataFrame:
        """The rows as `HistoryState.rows`: time, amount, the entities, the flags, the label."""
        c = self.columns
        cols = {"time": c["time"], "amount": c["amount"]}
        cols.update({e: pd.Series(self.values[e][codes], dtype=object) for e, codes in self.codes.items()})
        cols.update({k: v for k, v in c.items() if k not in ("time", "amount", "label")})
        cols.update({"label": c["label"]} if "label" in c else {})
        return pd.DataFrame(cols)


def _merged_codes(past_values, new_codes: np.ndarray, new_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One code per value over the state's rows then the new rows (-1 where a new row's value is
    missing; the state holds none), and the values by code (an object array)."""
    past_codes, past_uniques = pd.factorize(_objects(past_values), use_na_sentinel=True)
    return _codes_after(past_codes, _objects(past_uniques), new_codes, new_values)


def _codes_after(past_codes: np.ndarray, past_values: np.ndarray, new_codes: np.ndarray,
                 new_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_merged_codes` from the state's rows already encoded (`past_codes` into `past_values`):
    the state's codes stay, the new rows' values not among them get the next codes. The work
    grows with the distinct values, not with the state's rows."""
    if not len(past_values):
        return new_codes.astype("int64", copy=False), new_values
    found = pd.Index(past_values, dtype=object).get_indexer(new_values)
    unseen = found < 0
    found[unseen] = len(past_values) + np.arange(int(unseen.sum()))
    new = np.append(found, -1)[new_codes]  # code -1 (missing) picks the -1 after them
    values = np.concatenate([past_values, new_values[unseen]]) if unseen.any() else past_values
    return np.concatenate([past_codes, new]).astype("int64", copy=False), values


def _without_long_gaps(ms: np.ndarray, reach_ms: int) -> tuple[np.ndarray, int]:
    """`ms` with every gap between consecutive times longer than `reach_ms` shortened to
    `reach_ms + 1`, and the key width for it: no window reaches across such a gap either way,
    so every window holds the same rows, and the keys (entity code x width + ms) fit in int64
    whatever the times span (a request's times centuries apart)."""
    order = np.argsort(ms, kind="stable")
    gaps = np.minimum(np.diff(ms[order]), reach_ms + 1)
    out = np.empty_like(ms)
    out[order] = np.concatenate([[0], np.cumsum(gaps)])
    return out, int(out.max(initial=0) + reach_ms + 2)


def _keys(codes: np.ndarray, ms: np.ndarray, width: int) -> np.ndarray:
    """One sortable int64 per row: entity code, then time (ms since the first row)."""
    if codes.max(initial=0) + 1 > np.iinfo("int64").max // max(width, 1):
        raise DataError("history: too many entities for the time span; split the data by period")
    return codes * width + ms


def compute(time: np.ndarray, entities: dict[str, pd.Series], amount: np.ndarray | None,
            windows=DEFAULT_WINDOWS, state: HistoryState | None = None, *, continues: bool = False,
            hours: bool = False, labels: np.ndarray | None = None, label_delay: float | None = None,
            label_windows=()) -> tuple[pd.DataFrame, HistoryState]:
    """History features of new rows (`time` seconds, entity values as text, `amount`) after the
    rows of `state`; and the state after them. Rows with a missing time or entity value get no
    history (NaN) and are not remembered. `continues`: the new rows follow the state's rows in
    the same file (the next chunk), so every state row is earlier; otherwise (a model's state and
    new data) only state rows before the new rows' first time are. `hours`: with the hour of day
    against each entity's usual hours (`feature_names`). `label_delay` and `label_windows`: with
    the label-based risk, from `labels` (1 fraud, 0 normal, NaN not known; None: none known) and
    the state's."""
    names = list(entities)
    state = state if state is not None else HistoryState.empty(names)
    encoded = state._encoded if state._encoded is not None and set(state._encoded.codes) == set(names) else None
    if encoded is not None:
        past = {**encoded.columns, **{e: _Codes(encoded.codes[e], encoded.values[e]) for e in names}}
    else:
        past = {c: state.rows[c].to_numpy() for c in state.rows.columns}
    matrix, columns, rows, start = compute_arrays(time, entities, amount, windows, past, state.start,
                                                  continues=continues, hours=hours, labels=labels,
                                                  label_delay=label_delay, label_windows=label_windows,
                                                  encoded=True)
    features = pd.DataFrame(matrix, columns=columns, copy=False)
    return features, HistoryState(None, start, encoded=rows)


@dataclass(frozen=True)
class _Codes:
    """An entity's values in a state's rows, encoded: `codes` (one per row) into `values`."""

    codes: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows) -> _Codes:
        return _Codes(self.codes[rows], self.values)


def compute_arrays(time, entities: dict, amount, windows, past: dict[str, np.ndarray],
                   start: float | None, *, continues: bool = False, hours: bool = False,
                   labels=None, label_delay: float | None = None, label_windows=(), encoded: bool = False
                   ) -> tuple[np.ndarray, list[str], dict[str, np.ndarray] | _Encoded, float | None]:
    """`compute` on plain arrays (the service's per-request path, without pandas frames): the
    feature matrix, its column names, the state's rows after it (arrays by column) and when the
    history began. `past`: the state's rows by column ("time", "amount", the entities, the
    "new:<e>:<o>" flags and, with label-based risk, "label"; empty arrays for none; an entity's
    values may come encoded, as `_Codes`). `encoded`: the state's rows after it with the entity
    values encoded (`_Encoded`), as `compute` keeps them."""
    windows = sorted(float(w) for w in windows)
    risk = Risk(float(label_delay), sorted(float(w) for w in label_windows)) if label_delay is not None else None
    n = len(time)
    new_t = np.asarray(time, dtype="float64")
    new_amount = np.zeros(n) if amount is None else np.asarray(amount, dtype="float64")
    new_labels = np.full(n, np.nan) if labels is None else np.asarray(labels, dtype="float64")
    usable = ~np.isnan(new_t) & ~np.isnan(new_amount)
    # From PARALLEL_ROWS rows (the state's and the new ones) the entities' work runs side by side
    # in threads: NumPy and Arrow release the GIL.
    parallel = n + len(past.get("time", ())) >= PARALLEL_ROWS and len(entities) > 1
    with ThreadPoolExecutor(len(entities) + 1) if parallel else nullcontext() as pool:
        return _compute(pool, new_t, new_amount, new_labels, usable, entities, windows, past, start,
                        continues, hours, risk, encoded)


@dataclass(frozen=True)
class Risk:
    """The label-based risk's settings: labels known `delay` seconds after a payment; `windows`
    (sorted) ending there."""

    delay: float
    windows: list[float]


def reach(windows, label_delay: float | None = None, label_windows=()) -> float:
    """How far back a row's features look (seconds), so how long the state keeps a row: the
    longest window, or the label delay and the longest label window when longer."""
    risk = label_delay + max(label_windows) if label_delay is not None else 0.0
    return max(max(windows), risk)


def _compute(pool, new_t, new_amount, new_labels, usable, entities, windows, past, start, continues, hours,
             risk: Risk | None, encoded: bool = False):
    """`compute_arrays` with `pool` (or None) to run the entities' work in."""
    names = list(entities)
    horizon = windows[-1]
    keep_for = reach(windows, risk.delay, risk.windows) if risk else horizon  # how long the state keeps a row
    n = len(new_t)

    def factorize(e):
        values = entities[e] if isinstance(entities[e], pd.Series) else _objects(entities[e])
        codes, uniques = pd.factorize(values, use_na_sentinel=True)  # Arrow text: one dictionary encoding
        return codes, _objects(uniques)

    encoding = [_run(pool, factorize, e) for e in names]  # in threads with a pool
    # While the ids are encoded: the new rows' time order, milliseconds and log amounts, kept when
    # they are every row (no state rows before them, every row usable: the common case)
    ahead = None
    if pool is not None and not len(past.get("time", ())) and usable.all():
        ahead = _TimeOrder(new_t), np.round(new_t * 1000).astype("int64"), np.log1p(np.maximum(new_amount, 0.0))
    new_codes = dict(zip(names, (job.result() for job in encoding), strict=True))
    for codes, _ in new_codes.values():
        usable &= codes >= 0
    first = float(new_t[usable].min()) if usable.any() else None
    start = start if start is not None else first
    past_t = np.asarray(past.get("time", np.zeros(0)), dtype="float64")
    if first is not None and len(past_t) and not continues:  # history before the new rows' first time
        before = past_t < first
        past = {c: v[before] if isinstance(v, _Codes) else np.asarray(v)[before] for c, v in past.items()}
        past_t = past_t[before]
    k = len(past_t)
    every = bool(usable.all())

    def joined(before: np.ndarray, new: np.ndarray) -> np.ndarray:  # the state's rows, then the usable new
        return new if k == 0 and every else np.concatenate([before, new[usable]])  # (read only)

    t = joined(past_t, new_t)
    amounts = joined(np.asarray(past.get("amount", np.zeros(0)), dtype="float64"), new_amount)
    # the state's labels (none known in a state saved without them), then the new rows'
    labels = joined(np.asarray(past.get("label", np.full(k, np.nan)), dtype="float64"), new_labels) if risk else None
    codes_of, values_of = {}, {}
    for e in names:
        p = past.get(e, np.zeros(0, dtype=object))
        codes, values_of[e] = (_codes_after(p.codes, p.values, *new_codes[e]) if isinstance(p, _Codes)
                               else _merged_codes(p, *new_codes[e]))
        codes_of[e] = joined(codes[:k], codes[k:])
    m = len(t)
    if ahead is not None and k == 0 and every:
        in_time, stamp, log_amount = ahead
    else:
        in_time = _TimeOrder(t)  # state rows first, then the file's order, where times tie
        stamp = np.round(t * 1000).astype("int64")  # milliseconds: exact integer windows
        log_amount = np.log1p(np.maximum(amounts, 0.0))
    ms = stamp - (stamp.min() if m else 0)
    width = int(ms.max(initial=0) + round(keep_for * 1000) + 2)
    if max((int(c.max(initial=0)) for c in codes_of.values()), default=0) + 1 > np.iinfo("int64").max // width:
        ms, width = _without_long_gaps(ms, round(keep_for * 1000))
    columns = feature_names(names, windows, hours, risk.delay if risk else None, risk.windows if risk else ())
    out = _Block(m - k, columns)  # every feature of every new row, written in place
    # The pairs' flags: in a thread of their own beside the entities' sorting, which needs them
    # only later (`new_flags()` waits for them)
    new_flags = _run(pool, _pair_flags, names, codes_of, t, in_time, horizon, past, k).result
    jobs = [(e, codes_of[e], [o for o in names if o != e]) for e in names]

    def entity(job) -> None:
        _entity_features(out, *job, k=k, t=t, ms=ms, width=width, in_time=in_time, log_amount=log_amount,
                         new_flags=new_flags, windows=windows, start=start, hours=hours, labels=labels,
                         risk=risk)

    def state_rows() -> dict[str, np.ndarray] | _Encoded:  # the rows the state keeps: the last `keep_for`
        keep = t > t.max() - keep_for if m else np.zeros(0, dtype=bool)
        columns = {"time": t[keep], "amount": amounts[keep], **{key: flags[keep] for key, flags in new_flags().items()},
                   **({"label": labels[keep]} if risk else {})}
        if not encoded:
            return {"time": columns["time"], "amount": columns["amount"],
                    **{e: values_of[e][codes_of[e][keep]] for e in names},
                    **{c: v for c, v in columns.items() if c not in ("time", "amount")}}
        codes, values = {}, {}
        for e in names:
            codes[e], values[e] = codes_of[e][keep], values_of[e]
            if len(values[e]) > 2 * len(codes[e]) + 1024:  # values the kept rows no longer use: drop them
                used, codes[e] = np.unique(codes[e], return_inverse=True)
                values[e] = values[e][used]
        return _Encoded(columns, codes, values)

    done = (pool.map if pool else map)(entity, jobs)  # (pool.map submits every job at once)
    kept = _run(pool, state_rows)  # beside the entities' work, once the pairs' thread is free
    list(done)
    if k == 0 and every:  # the common case: no state, every row usable; no copy
        matrix = out.values
    else:
        matrix = np.full((n, len(columns)), np.nan)
        matrix[usable] = out.values
    return matrix, columns, kept.result(), start


def _run(pool, fn, *args) -> Future:
    """`fn(*args)` in `pool`, or at once without one."""
    if pool is not None:
        return pool.submit(fn, *args)
    done: Future = Future()
    done.set_result(fn(*args))
    return done


class _TimeOrder:
    """The rows in time order, a tie broken by the rows' order (the state's rows first, then the
    file's), and each row's place in it: sorting by a group (an entity, a pair) then time is then
    one sort of an int64 that packs the group above the place, which SIMD sorts serve (a
    three-key `np.lexsort` took 3x as long on 10M rows)."""

    def __init__(self, t: np.ndarray):
        self.t = t
        self.bits = max(1, (len(t) - 1).bit_length())
        if len(t) < 2 or bool(np.all(t[1:] >= t[:-1])):  # a log in time order: each row is its place
            self.order, self.place = None, np.arange(len(t))
        else:
            self.order = np.argsort(t, kind="stable")
            self.place = np.empty(len(t), dtype="int64")
            self.place[self.order] = np.arange(len(t))

    def by(self, group: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The rows' order by `group` (non-negative integers) then time, and `group` in that order;
        of `rows` alone when given (row numbers, ascending)."""
        top = int(group.max(initial=0))
        if top >= 1 << (62 - self.bits):  # does not pack into 63 bits
            if rows is None:
                order = np.lexsort((np.arange(len(self.t)), self.t, group))
            else:
                order = rows[np.lexsort((rows, self.t[rows], group[rows]))]
            return order, group[order]
        packed = (group if rows is None else group[rows]).astype("int64") << self.bits
        packed |= self.place if rows is None else self.place[rows]
        packed.sort()
        sorted_group = packed >> self.bits
        packed &= (1 << self.bits) - 1
        return (packed if self.order is None else self.order[packed]), sorted_group


def _pair_flags(names: list[str], codes_of: dict, t, in_time: _TimeOrder, horizon: float, past: dict,
                k: int) -> dict:
    """`new:<e>:<o>`: 1.0 where the row's pair (e, o) did not occur in the longest window before
    it. Stored for the state's `k` rows, computed for the new ones; the same for (o, e)."""
    flags_of = {}
    for i, e in enumerate(names):
        for o in names[i + 1:]:
            pair = codes_of[e] * (int(codes_of[o].max(initial=0)) + 1) + codes_of[o]
            # after a state that holds the pair's flags, only the rows of the new rows' entities `e`
            # are read (the flags of the state's rows are the state's own)
            stored = all(key in past for key in (f"new:{e}:{o}", f"new:{o}:{e}"))
            order, sp = in_time.by(pair, _with_new(codes_of[e], k) if stored else None)
            st = t[order]
            same = _after(False, sp[1:] == sp[:-1])
            gap = _after(np.inf, st[1:] - st[:-1])
            flags = np.empty(len(t), dtype="float64")
            flags[order] = ~(same & (gap < horizon))
            for key in (f"new:{e}:{o}", f"new:{o}:{e}"):
                flags_of[key] = flags
                if k and key in past:
                    flags_of[key] = flags.copy()
                    flags_of[key][:k] = np.asarray(past[key], dtype="float64")
    return flags_of


def _entity_features(out: _Block, e: str, codes: np.ndarray, others: list[str], *, k: int, t, ms, width: int,
                     in_time: _TimeOrder, log_amount, new_flags: Callable[[], dict], windows: list[float], start,
                     hours: bool = False, labels: np.ndarray | None = None, risk: Risk | None = None) -> None:
    """Write entity `e`'s columns of every new row (the rows after the state's `k`) into `out`
    (its row 0 is row `k`).

    The rows are sorted by entity then time once; the windows' arithmetic then runs over blocks of
    `CHUNK_ROWS` sorted rows, so its temporaries stay small and are reused rather than fresh
    memory for every step (on 10M rows, fresh memory cost more system time than the arithmetic).
    The state's rows are only history: their running sums are needed, their features are not, so
    after a state the blocks hold the new rows alone (a chunk of a file after a month of state runs
    the windows' arithmetic for its own rows; the sort and the running sums still cover the
    month's)."""
    horizon = windows[-1]
    # After a state, only the state's rows of the entities that the new rows have are read: an
    # entity's features come from its own rows (a chunk of 20,000 rows after a month of state
    # touches a fifth of the cards)
    order, sorted_codes = in_time.by(codes, _with_new(codes, k))
    m = len(order)
    keys = _keys(sorted_codes, ms[order], width)
    st = t[order]
    first = _after(True, sorted_codes[1:] != sorted_codes[:-1]) if m else np.zeros(0, bool)
    del sorted_codes
    # Sums of each entity's log amounts less its first one, and of their squares, starting afresh
    # with each entity: small numbers, so a window's sum (a difference of running sums) keeps its
    # digits whichever rows came before (the state's or a whole log's).
    starts = np.flatnonzero(first)
    centred = log_amount[order]
    centred -= np.repeat(centred[starts], np.diff(np.append(starts, m)))
    cs_amount = _running_sum(centred, restart=starts)
    cs_square = _running_sum(np.square(centred), restart=starts)
    if hours:  # running sums of each time of day's sine and cosine less the entity's first
        # (as the amounts), filled block by block below: no full-size temporaries
        cs_sin, cs_cos = np.empty(m + 1), np.empty(m + 1)
        cs_sin[0] = cs_cos[0] = 0.0
    flags = new_flags()  # waits for the pairs' flags
    for o in others:  # in the rows' own order: no sorting either way
        np.subtract(1.0, flags[f"new:{e}:{o}"][k:], out=out.column(f"{e}.{o}_seen"))
    cs_new = {o: _running_sum(flags[f"new:{e}:{o}"][order]) for o in others}
    if risk:  # running counts of the labelled rows and of the frauds among them
        sorted_labels = labels[order]
        cs_known = _running_sum(~np.isnan(sorted_labels))
        cs_fraud = _running_sum(sorted_labels == 1.0)
        del sorted_labels
    origin = start if start is not None else 0.0
    col = out.column
    if hours and k:  # the running sums of the hour first, over every row (the state's too)
        for _ in _hour_sums(st, first, starts, cs_sin, cs_cos):  # (each block's values unused)
            pass
    hour_blocks = _hour_sums(st, first, starts, cs_sin, cs_cos) if hours and not k else None
    for lo, hi, ix in _blocks(order, k):
        rows = order[ix] - k if k else order[ix]
        pos = np.arange(lo, hi) if isinstance(ix, slice) else ix
        # Early rows see less than a whole window of history: their counts are scaled to a
        # whole window (by the share of it since the history began, at least a day's worth),
        # so the first weeks do not look quieter than the rest.
        seen = st[ix] - origin
        block = keys[ix]
        if hour_blocks is not None:  # the block's sums filled here, with its rows' sines and cosines
            sin_cos, first_sin_cos = next(hour_blocks)
        elif hours:  # after a state: the new rows' own, and their entities' first rows'
            angle, first_angle = _day_angle(st[ix]), _day_angle(st[starts[np.searchsorted(starts, pos, "right") - 1]])
            sin_cos, first_sin_cos = (np.sin(angle), np.cos(angle)), (np.sin(first_angle), np.cos(first_angle))
        for w in windows:
            # Each row's window starts within its entity's rows, at or after the first row's
            # start: search only from there (a few cached blocks, not the whole array)
            since = block - round(w * 1000)
            q0 = int(np.searchsorted(keys[:lo], since[0], side="right")) if lo else 0
            q = np.searchsorted(keys[q0:hi], since, side="right")
            q += q0
            count = (pos - q).astype("float64")
            total = cs_amount[ix] - cs_amount[q]  # the window's rows before this one
            wn = window_name(w)
            # (a window of a day or less is whole from the start: no scaling)
            col(f"{e}.count_{wn}")[rows] = count * (w / np.clip(seen, 86_400.0, w)) if w > 86_400.0 else count
            mean_log = total / np.maximum(count, 1)
            col(f"{e}.amount_ratio_{wn}")[rows] = np.where(count > 0, centred[ix] - mean_log, 0.0)
            for o in others:
                col(f"{e}.new_{o}_{wn}")[rows] = cs_new[o][ix] - cs_new[o][q]
        # the amount against the entity's own spread over the longest window (3 payments or more;
        # `count`, `total` and `q` are the loop's last window's: the longest)
        n_long = np.maximum(count, 1)
        mean = total / n_long
        spread = np.sqrt(np.maximum((cs_square[ix] - cs_square[q]) / n_long - mean**2, 0.0))
        col(f"{e}.amount_z_{window_name(horizon)}")[rows] = np.where(
            count >= 3, (centred[ix] - mean) / np.maximum(spread, Z_FLOOR), 0.0)
        if hours:  # over the longest window, like the z-score
            sin_sum = cs_sin[ix] - cs_sin[q] + count * first_sin_cos[0]
            cos_sum = cs_cos[ix] - cs_cos[q] + count * first_sin_cos[1]
            closeness = (sin_cos[0] * sin_sum + sin_cos[1] * cos_sum) / n_long
            col(f"{e}.hour_unusual_{window_name(horizon)}")[rows] = np.where(count >= 3, 1.0 - closeness, 0.0)
        if isinstance(ix, slice):
            gap = st[lo:hi] - st[lo - 1:hi - 1] if lo else _after(horizon, np.diff(st[:hi]))
        else:  # (an entity's first row takes the cap below, whatever its gap)
            gap = st[ix] - st[np.maximum(ix - 1, 0)]
        col(f"{e}.since_last")[rows] = np.where(first[ix], horizon, np.minimum(gap, horizon))
        if risk:  # the labelled rows in (t - delay - w, t - delay]: known by now
            end = block - round(risk.delay * 1000)
            q_end = np.searchsorted(keys[:hi], end, side="right")
            for w in risk.windows:
                q_w = np.searchsorted(keys[:hi], end - round(w * 1000), side="right")
                known = cs_known[q_end] - cs_known[q_w]
                frauds = cs_fraud[q_end] - cs_fraud[q_w]
                col(f"{e}.fraud_rate_{window_name(w)}")[rows] = np.where(known > 0, frauds / np.maximum(known, 1), 0.0)
            col(f"{e}.frauds_{window_name(risk.windows[-1])}")[rows] = frauds


def _with_new(codes: np.ndarray, k: int) -> np.ndarray | None:
    """The rows (ascending) whose code some row after the first `k` has; None when that is every
    row, or when there is no state (`k` 0)."""
    if not k or k == len(codes):
        return None
    present = np.zeros(int(codes.max(initial=0)) + 1, dtype=bool)
    present[codes[k:]] = True
    wanted = present[codes]
    return None if wanted.all() else np.flatnonzero(wanted)


def _blocks(order: np.ndarray, k: int):
    """(lo, hi, index) per block of `CHUNK_ROWS` sorted rows whose features are wanted: every row
    (index a slice lo:hi) without a state; after one, the new rows' sorted places (an array,
    between lo and hi)."""
    m = len(order)
    if not k:
        for lo in range(0, m, CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, m)
            yield lo, hi, slice(lo, hi)
        return
    wanted = np.flatnonzero(order >= k)
    for a in range(0, len(wanted), CHUNK_ROWS):
        places = wanted[a:a + CHUNK_ROWS]
        yield int(places[0]), int(places[-1]) + 1, places


def _hour_sums(st: np.ndarray, first: np.ndarray, starts: np.ndarray, cs_sin: np.ndarray, cs_cos: np.ndarray):
    """Fill the running sums of each sorted row's time of day's sine and cosine less its entity's
    first row's, block by block (`CHUNK_ROWS`: no full-size temporaries), yielding each block's
    (sine, cosine) and (its rows' first rows' sine, cosine)."""
    m = len(st)
    for lo in range(0, m, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, m)
        angle = _day_angle(st[lo:hi])
        sin_cos = np.sin(angle), np.cos(angle)
        # each row's entity's first row: the last start at or before it, in this block (its
        # sine and cosine are the block's) or, before the block's first start, the start carried
        # in from before it (one search a block)
        local = np.maximum.accumulate(np.where(first[lo:hi], np.arange(hi - lo), -1))
        carried = _day_angle(st[starts[np.searchsorted(starts, lo, side="right") - 1]])
        first_sin_cos = tuple(np.where(local >= 0, now[local], then)
                              for now, then in zip(sin_cos, (np.sin(carried), np.cos(carried)), strict=True))
        for sums, now, then in zip((cs_sin, cs_cos), sin_cos, first_sin_cos, strict=True):
            np.cumsum(now - then, out=sums[lo + 1:hi + 1])
            sums[lo + 1:hi + 1] += sums[lo]
        yield sin_cos, first_sin_cos


def _day_angle(seconds: np.ndarray) -> np.ndarray:
    """The time of day as an angle (radians). The feature compares angles only, so it does not
    depend on where the time column counts from."""
    return np.mod(seconds, 86_400.0) * (2 * np.pi / 86_400.0)


def hour_unusual(t: float, times: np.ndarray) -> float:
    """`<entity>.hour_unusual_<longest>` of one payment at `t` after the entity's payments at
    `times` in the longest window (the service's one-transaction path)."""
    if len(times) < 3:
        return 0.0
    return float(1.0 - np.mean(np.cos(_day_angle(np.asarray(times)) - _day_angle(np.asarray(t)))))


def _running_sum(values: np.ndarray, restart: np.ndarray | None = None) -> np.ndarray:
    """0, then the running sums of `values` (one array: no copy to put the 0 in front): entry i
    sums the values before row i. With `restart`, the first row of each group (sorted, the first
    0), the sums start afresh with each group: each group's last value also takes off the group's
    total while summing, so the entry at the next group's first row is 0 (up to rounding), and a
    sum over a group's rows does not carry the rounding of a sum as large as every row before it
    (the squares of 10M rows add up to 1e7, where a float64 keeps about 1e-9). `values` is as it
    was after the call."""
    out = np.empty(len(values) + 1)
    out[0] = 0.0
    if restart is None or len(restart) < 2:
        np.cumsum(values, out=out[1:])
        return out
    ends = np.append(restart[1:], len(values)) - 1
    kept = values[ends]
    values[ends] -= np.add.reduceat(values, restart)
    np.cumsum(values, out=out[1:])
    values[ends] = kept
    return out


def _after(first, values: np.ndarray) -> np.ndarray:
    """`values` with `first` in front (as np.r_, without its indexing machinery)."""
    return np.concatenate([np.array([first], dtype=values.dtype if values.size else None), values])


def _objects(values) -> np.ndarray:
    """Entity values as an object array (None where missing)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=object, na_value=None)
    return np.asarray(values, dtype=object)


class _Block:
    """The features of the rows as one float64 matrix (one frame, no column copies), written in
    place column by column (`column`)."""

    def __init__(self, rows: int, columns: list[str]):
        self.values = np.empty((rows, len(columns)), order="F")  # columns contiguous, as pandas keeps them
        self.index = {c: j for j, c in enumerate(columns)}

    def column(self, name: str) -> np.ndarray:
        """The column `name`, a view to write into."""
        return self.values[:, self.index[name]]


def table_inputs(df: pd.DataFrame, schema) -> tuple[np.ndarray, dict[str, pd.Series], np.ndarray | None]:
    """The time (seconds), entity values (text) and amount of `df`, by the schema's one reading of
    each type (`aedetect.data.values`); an unreadable value is missing here (the row then gets no
    history; scoring names the value)."""
    from aedetect.data.values import category_text, read_datetimes, read_numbers

    spec = schema.history
    time_spec = schema.column(schema.time)
    cols = dict(df.items())  # by name without the frame's column index (built anew for each small frame)
    missing = [c for c in input_columns(schema) if c not in cols]
    if missing:
        raise DataError(f"history features need column(s) {', '.join(map(repr, missing))}, which the "
                        "data does not have")
    raw = cols[schema.time]
    if time_spec.type == "datetime":
        time, _ = read_datetimes(raw, time_spec.format)
    else:
        time, _ = read_numbers(raw)
    entities = {e: category_text(cols[e]) for e in spec.entities}
    amount = read_numbers(cols[spec.amount])[0] if spec.amount is not None else None
    return time, entities, amount


def table_labels(df: pd.DataFrame, schema) -> np.ndarray | None:
    """The labels label-based risk reads from `df`: 1.0 fraud, 0.0 normal, NaN not known (an empty
    or other value); None when the model has no such features or `df` has no label column."""
    spec = schema.history
    if spec is None or spec.label_delay is None or schema.label not in df.columns:
        return None
    from aedetect.data.values import read_numbers

    raw = df[schema.label]
    y = raw.to_numpy(dtype="float64", na_value=np.nan) if pd.api.types.is_bool_dtype(raw) else read_numbers(raw)[0]
    return np.where((y == 0) | (y == 1), y, np.nan)


def add_history(df: pd.DataFrame, schema, state: HistoryState | None = None, *,
                continues: bool = False) -> tuple[pd.DataFrame, HistoryState | None]:
    """`df` with the schema's history columns added (computed after `state`, see `compute`), and
    the state after it; `df` unchanged (state None) when the schema has no history."""
    if getattr(schema, "history", None) is None:
        return df, None
    time, entities, amount = table_inputs(df, schema)
    features, state = compute(time, entities, amount, schema.history.windows, state, continues=continues,
                              labels=table_labels(df, schema), **schema.history.options)
    features.index = df.index
    return pd.concat([df.drop(columns=[c for c in features.columns if c in df.columns]), features],
                     axis=1), state


def read_state(path, entities: list[str]) -> HistoryState:
    """A history state saved to Parquet (`HistoryState.to_parquet`: `aedetect score
    --history-state`, the service's `--history-state`), checked to hold the time, the amount and
    the model's `entities`."""
    import pyarrow as pa

    try:
        state = HistoryState.from_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read the history state ({exc})") from None
    cols = list(state.rows.columns)
    missing = [c for c in ["time", "amount", *entities] if c not in cols]
    if missing:
        raise DataError(f"{path}: not a history state of this model: no column(s) {missing} (it has "
                        f"{cols[:8]}{' ...' if len(cols) > 8 else ''})")
    if not pd.api.types.is_numeric_dtype(state.rows["time"]):
        raise DataError(f"{path}: not a history state: its 'time' column holds {state.rows['time'].dtype}, "
                        "not seconds")
    return state


BATCH_GAP_ADVICE = ("Score the files in between first, carrying the history from each to the next with "
                    "--history-state FILE")


def gap_warning(times: np.ndarray | None, first: float, schema, *, source: str, continues_from: str,
                advice: str = BATCH_GAP_ADVICE) -> str | None:
    """Set when rows starting at `first` (seconds) come well after the last of `times` (the
    rows of the history they continue from): more than a day, and more than three times the
    longest quiet spell between those rows. The payments in between are missing from every
    entity's history, so windows reaching back over the gap count too few and pairs look new."""
    if times is None or not np.isfinite(first):
        return None
    t = np.sort(np.asarray(times, dtype="float64"))
    t = t[np.isfinite(t)]
    if not len(t):
        return None
    gap, quiet = first - t[-1], float(np.diff(t).max(initial=0.0))
    if gap <= max(86_400.0, 3 * quiet):
        return None
    dated = schema.column(schema.time).type == "datetime"

    def when(x: float) -> str:
        return f"{pd.Timestamp(x, unit='s'):%Y-%m-%d %H:%M}" if dated else f"time {x:g}"

    horizon = max(schema.history.windows) / 86_400
    return (f"{source}: its first row ({when(first)}) comes {gap / 86_400:.1f} days after the last row of the "
            f"history it continues from ({continues_from}, ending {when(t[-1])}); the payments in between are "
            f"missing from every entity's history, so for up to {horizon:g} days its counts read low and its "
            f"pairs new. {advice}")


def settled_rows(t: np.ndarray, start: float, seconds: float) -> np.ndarray:
    """True for the rows (times `t`) whose history, begun at `start`, is at least `seconds` old,
    and for rows without a time (they are the split's to judge)."""
    return ~(t - start < seconds)


def state_times(state: HistoryState | None) -> np.ndarray | None:
    """The times of a state's rows (None for no state), for `gap_warning`."""
    return None if state is None else state.rows["time"].to_numpy(dtype="float64", na_value=np.nan)


def input_columns(schema) -> list[str]:
    """The columns the history is computed from: the time, the entities and the amount."""
    h = schema.history
    return list(dict.fromkeys(c for c in [schema.time, *h.entities, h.amount] if c is not None))


def no_history_reason(schema) -> str:
    """The reason a row without history features is not scored (every engine gives this one)."""
    return f"no history: an empty or unreadable value in {', '.join(map(repr, input_columns(schema)))}"


def attach_history(x: pd.DataFrame, reasons: np.ndarray, features, schema) -> tuple[pd.DataFrame, np.ndarray]:
    """The parsed rows `x` (`aedetect.data.arrow.parse_table`, which leaves the history columns
    out) with the history columns `features` (a mapping of column to values) in the model's
    order, and `reasons` with `no_history_reason` for each good row that has no history. The
    batch scorer and Spark's workers both finish their rows here."""
    for c in schema.computed_features:
        if c in features:  # (Spark's workers give the autoencoder's alone)
            x[c] = np.asarray(features[c], dtype="float64")
    none = np.isnan(x[schema.history_features[0]].to_numpy()) & (reasons == None)  # noqa: E711
    if none.any():
        reasons = reasons.copy()
        reasons[none] = no_history_reason(schema)
    return x[list(schema.features) + [c for c in schema.label_features if c in features]], reasons


def ensure_history(X, schema, state: HistoryState | None):
    """`X` with its history columns: computed (after `state`) when a table lacks them."""
    if getattr(schema, "history", None) is None or not isinstance(X, pd.DataFrame):
        return X
    if all(c in X.columns for c in schema.history_features):
        return X
    return add_history(X, schema, state)[0]


def settle_seconds(name: str, spec) -> float | None:
    """How much history (seconds since it began) column `name` needs before its values look as
    they will on any later row; None when `name` is not one of `spec`'s history columns. A
    window's counts and amounts need the window (counts are scaled to a whole one, amounts are
    not); what compares with the longest window (the z-score, the usual hours, the gap since the
    last payment, whether a pair was seen) needs it whole; payments at new counterparties in a
    window need that window after a whole longest one (a pair is new against the longest window
    before it); the label-based risk needs the label delay and its window."""
    if "." not in name or name.split(".", 1)[0] not in spec.entities:
        return None
    horizon = max(spec.windows)
    if name.endswith((".since_last", "_seen")):
        return horizon
    _, kind, window = _per_window(name)
    try:
        w = _seconds(window)
    except (KeyError, ValueError, IndexError):
        return None
    if kind.startswith("new_"):
        return horizon + w
    if kind in ("fraud_rate", "frauds"):
        return (spec.label_delay or 0.0) + w
    return w


def _per_window(name: str) -> tuple[str, str, str]:
    entity, tail = name.rsplit(".", 1)
    kind, _, window = tail.rpartition("_")
    return entity, kind, window


def _seconds(window: str) -> float:
    return float(window[:-1]) * {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}[window[-1]]


def describe_feature(name: str, values: np.ndarray, others: dict[str, np.ndarray]) -> np.ndarray:
    """A history feature's value on each row in the team's words, e.g. `card_id: 9 payments in
    the last 1h (usual 0.4)`, `amount 4.1x card_id's usual (7d)`, `card_id: first payment at this
    terminal_id in 30d`. `others`: the entity's other history columns on the same rows (the
    usual rate comes from the longest window's count). Each distinct value is put in words once
    (`_each`): a file's reasons repeat a few counts and rates many times."""
    entity, tail = name.rsplit(".", 1)
    v = np.asarray(values, dtype="float64")
    out = np.empty(len(v), dtype=object)
    if tail == "since_last":
        windows = [_seconds(c.rsplit("_", 1)[1]) for c in others if c.rsplit(".", 1)[1].startswith("count_")]
        cap = max(windows, default=np.inf)
        out[:] = _each(v, lambda x: f"{entity}: no payment in the last {_duration(cap)}" if x >= cap else
                       f"{entity}: previous payment {_duration(x)} before")
        return out
    if tail.endswith("_seen"):
        other = tail[:-len("_seen")]
        seen, first = f"{entity}: paid at this {other} before", f"{entity}: first payment at this {other}"
        out[:] = np.where(v >= 0.5, seen, first)
        return out
    _, kind, window = _per_window(name)
    if kind == "count":
        longest = max((c for c in others if c.rsplit(".", 1)[1].startswith("count_")),
                      key=lambda c: _seconds(c.rsplit("_", 1)[1]), default=None)
        out[:] = _each(v, lambda x: f"{entity}: {x:.0f} payments in the last {window}")
        if longest is not None and longest != name:
            rate = np.asarray(others[longest], dtype="float64") * _seconds(window) / _seconds(longest.rsplit("_", 1)[1])
            out += _each(rate, lambda r: f" (usual {r:.2g})")
    elif kind == "amount_z":
        out[:] = _each(v, lambda x: f"amount {x:+.2g} sd from {entity}'s usual ({window})")
    elif kind == "hour_unusual":  # as hours: the angle whose cosine is the mean closeness
        away = np.degrees(np.arccos(np.clip(1.0 - v, -1.0, 1.0))) / 15.0
        # exactly 0: fewer than 3 earlier payments (with 3 or more it would take every one at the
        # same second of the day)
        out[:] = np.where(v == 0, f"{entity}: fewer than 3 payments in the last {window}, no usual hours yet",
                          _each(away, lambda x: f"{entity}: paid at an hour about {x:.0f}h from its usual "
                                                f"ones ({window})"))
    elif kind == "amount_ratio":
        out[:] = _each(v, lambda x: f"amount {np.exp(x):.2g}x {entity}'s usual ({window})")
    elif kind == "fraud_rate":
        out[:] = _each(v, lambda x: f"{entity}: {x:.0%} of its labelled payments fraud ({window} before the "
                                    "label delay)")
    elif kind == "frauds":
        out[:] = _each(v, lambda x: f"{entity}: {x:.0f} labelled frauds ({window} before the label delay)")
    elif kind.startswith("new_"):
        out[:] = _each(v, lambda x: f"{entity}: {x:.0f} payments at a new {kind[4:]} in the last {window}")
    else:
        out[:] = _each(v, lambda x: f"{name}={x:.7g}")
    return out


def _each(values: np.ndarray, text) -> np.ndarray:
    """`text(x)` for each of `values` (Python strings in an object array), called once per
    distinct value."""
    distinct, at = np.unique(values, return_inverse=True)
    return np.array([text(x) for x in distinct.tolist()], dtype=object)[at.reshape(-1)]


def _duration(seconds: float) -> str:
    for size, unit in ((86_400.0, "d"), (3_600.0, "h"), (60.0, "min")):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
