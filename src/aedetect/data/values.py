"""One reading of every value, by column type: the same cell gives the same value through every
entry point (training, `evaluate`, `score` from CSV or Parquet, the service, V2, Spark).

Each reader takes a column as given (a pandas Series of text, numbers, booleans, datetimes or a
mix, as a CSV reader, Parquet, JSON or a DataFrame delivers it) and returns float64 values (NaN
where missing or refused) and a per-row problem (None where the value is good). Callers either
stop at the first problem (`raise_first`) or skip the rows that have one, with the reason.

The rules (docs/hostile-input.md lists them with the defects they fixed):
  numbers      finite numbers; a boolean is not a number; text must parse as a number
  booleans     true/false, yes/no, 1/0 (any case, surrounding spaces ignored) or a boolean or the
               number 1 or 0; anything else is refused
  categories   text exactly as written (a code keeps its leading zeros); a number given for a
               category is written the one way `category_text` says: 7, 7.0 and the text "7.0"
               are all "7" (pandas writes integer codes of a column with gaps as "7.0"); other
               numbers in their shortest form ("0.5"); empty text is a missing value
  datetimes    text in the column's date format (stored in the schema, inferred from the
               training data), else ISO 8601, else one value at a time (month before day when
               ambiguous), so a value never reads differently because of its neighbours;
               numbers (and text that is a plain number) are seconds since 1970; `now`,
               `today`, `yesterday` and `tomorrow` are refused. A time zone offset keeps the
               wall-clock time it was written in (hour of day is the local hour the row was
               stamped): "2024-03-01T10:00+05:00" reads as 10:00.
"""

from __future__ import annotations

import datetime
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aedetect.errors import DataError

# The largest magnitude a feature value may have. The network computes in float32 (largest
# value about 3.4e38) and its layers multiply and add; a raw value beyond this bound would
# overflow to inf on the way and score NaN. 1e15 leaves 23 orders of magnitude of headroom and is
# far above any amount, count or millisecond timestamp.
MAX_ABS_VALUE = 1e15

TRUE_TEXT = ("true", "yes", "1")
FALSE_TEXT = ("false", "no", "0")
RELATIVE_DATES = ("now", "today", "yesterday", "tomorrow")
_INTEGRAL_TEXT = re.compile(r"^[+-]?\d+\.0+$")  # "7.0": pandas' text of an integer code
_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def shown(value):
    """A cell as a plain Python value, so messages say `inf`, not `np.float64(inf)`; text is
    cut to 40 characters so a binary or huge cell is not echoed whole."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, str) and len(value) > 40:
        value = value[:40] + "..."
    return value


def out_of_range_reason(value) -> str:
    return f"value {shown(value)!r} is out of range (the model accepts magnitudes up to {MAX_ABS_VALUE:g})"


def _series(values) -> pd.Series:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.to_pandas()
    if isinstance(values, pd.Series) and isinstance(values.index, pd.RangeIndex) and values.index.start == 0 \
            and values.index.step == 1:
        return values  # positions are already 0, 1, ... (no copy to renumber)
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object)
                                                               if np.ndim(values) else [values])
    return s.reset_index(drop=True)


def clean_numbers(values) -> np.ndarray | None:
    """Float64 values of a column whose every value is a plain finite number or missing, in one
    vectorised Arrow cast; None when any value needs the per-value rules of `read_numbers`.

    Arrow parses text strictly (no surrounding spaces, no `1_000`) and rounds exactly as
    Python's `float` does, so whatever it accepts reads as the per-value rules read it (a
    property test holds the two to each other); NaN and infinities, which it accepts as text,
    send the column to those rules, which refuse them with a reason."""
    if isinstance(values, pd.Series):
        if not (pd.api.types.is_string_dtype(values) or pd.api.types.is_numeric_dtype(values)) \
                or pd.api.types.is_bool_dtype(values):
            return None
        try:
            values = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    elif isinstance(values, np.ndarray) and values.dtype.kind in "iuf":  # numbers already
        v = values.astype("float64")  # a copy: callers mask it
        with np.errstate(invalid="ignore"):
            clean = np.isfinite(v).all() and (np.abs(v) <= MAX_ABS_VALUE).all()
        return v if clean else None  # a NaN (a gap) or a bad value: the per-value rules
    elif not isinstance(values, (pa.Array, pa.ChunkedArray)):
        return None
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
            or pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
        return None
    try:
        cast = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    v = np.array(cast.to_numpy(zero_copy_only=False), dtype="float64")  # writable: callers mask it
    ok = np.isfinite(v)
    if cast.null_count:
        ok |= cast.is_null().to_numpy(zero_copy_only=False)
    if not ok.all() or (np.abs(v[np.isfinite(v)]) > MAX_ABS_VALUE).any():
        return None
    return v


def _is_text_dtype(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s)


def _empty(s: pd.Series) -> np.ndarray:
    """Missing cells: null, NaN, or text that is empty (or only spaces)."""
    missing = s.isna().to_numpy().copy()
    if _is_text_dtype(s):
        try:  # vectorised; non-text values in an object column give NaN (not blank)
            blank = s.str.strip().eq("")
        except (AttributeError, TypeError):  # an object column with no text (or bytes)
            return missing
        missing |= blank.fillna(False).to_numpy(dtype=bool)
    return missing


def raise_first(problems: np.ndarray, column: str, source: str | None = "input") -> None:
    """Raise a DataError for the first problem of a column: source, column, row, value, count
    (`source` None: the message starts at the column)."""
    bad = np.flatnonzero(problems != None)  # noqa: E711 (element-wise on object arrays)
    if len(bad):
        i = int(bad[0])
        count = f" ({len(bad)} such value(s) in this column)" if len(bad) > 1 else ""
        where = f"{source}: " if source else ""
        raise DataError(f"{where}column {column!r}, row {i + 1}: {problems[i]}{count}")


# -- numbers ------------------------------------------------------------------------------------
def read_numbers(values) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and per-row problems of a numeric column. Missing cells are NaN with no
    problem (the caller decides whether the model reads gaps); out-of-range magnitudes, text
    that is not a number, infinities and booleans are problems. `values`: a pandas Series, an
    Arrow array (read without pandas when every value is clean), or anything array-like."""
    if isinstance(values, pd.Series) and len(values) <= SMALL and values.dtype.kind in "iuf":
        values = values.to_numpy()  # a request's few numbers: NumPy's checks, not Arrow's set-up
    fast = clean_numbers(values)
    if fast is not None:
        return fast, np.full(len(fast), None, dtype=object)
    return _read_numbers_by_value(_series(values))


def _read_numbers_by_value(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`read_numbers` for a column with a value that needs the per-value rules (or a reason)."""
    n = len(s)
    problems = np.full(n, None, dtype=object)
    if pd.api.types.is_bool_dtype(s):
        v = np.full(n, np.nan)
        for i in np.flatnonzero(s.notna().to_numpy()):
            problems[i] = f"value {shown(s.iloc[i])!r} is a boolean; this column holds numbers"
        return v, problems
    if pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        empty = np.isnan(v)
        not_number = np.zeros(n, dtype=bool)
    else:
        empty = _empty(s)
        if s.dtype == object:  # Python objects: a boolean among them is refused
            flags = s.map(lambda x: isinstance(x, (bool, np.bool_)), na_action="ignore")
            booleans = flags.fillna(False).to_numpy(dtype=bool)
        else:  # a text column holds no booleans
            booleans = np.zeros(n, dtype=bool)
        v = pd.to_numeric(s.where(~booleans), errors="coerce").to_numpy(dtype="float64", na_value=np.nan,
                                                                         copy=True)
        for i in np.flatnonzero(booleans):
            problems[i] = f"value {shown(s.iloc[i])!r} is a boolean; this column holds numbers"
        not_number = np.isnan(v) & ~empty & ~booleans
        v[empty] = np.nan
    infinite = np.isinf(v)
    with np.errstate(invalid="ignore"):
        huge = (np.abs(v) > MAX_ABS_VALUE) & ~infinite
    for i in np.flatnonzero(not_number):
        problems[i] = f"value {shown(s.iloc[i])!r} is not a number"
    for i in np.flatnonzero(infinite):
        problems[i] = f"value {shown(s.iloc[i])!r} is not finite"
    for i in np.flatnonzero(huge):
        problems[i] = out_of_range_reason(v[i])
    v[not_number | infinite | huge] = np.nan
    return v, problems


# -- booleans -----------------------------------------------------------------------------------
def read_booleans(values) -> tuple[np.ndarray, np.ndarray]:
    """1.0 / 0.0 per row (NaN where missing), and per-row problems: see the module docstring."""
    s = _series(values)
    n = len(s)
    problems = np.full(n, None, dtype=object)
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype="float64", na_value=np.nan, copy=True), problems
    empty = _empty(s)
    v = np.full(n, np.nan)
    if pd.api.types.is_numeric_dtype(s):
        x = s.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        ok = np.isin(x, (0.0, 1.0))
        v[ok] = x[ok]
        bad = ~ok & ~empty
    else:
        def one(x):
            if isinstance(x, (bool, np.bool_)):
                return float(x)
            if isinstance(x, (int, float, np.integer, np.floating)):
                return float(x) if x in (0, 1) else np.nan
            t = str(x).strip().lower()
            return 1.0 if t in TRUE_TEXT else 0.0 if t in FALSE_TEXT else np.nan

        v = s.map(one, na_action="ignore").to_numpy(dtype="float64", na_value=np.nan, copy=True)
        v[empty] = np.nan
        bad = np.isnan(v) & ~empty
    for i in np.flatnonzero(bad):
        problems[i] = (f"value {shown(s.iloc[i])!r} is not a boolean (true/false, yes/no or 1/0, "
                       "any case)")
    return v, problems


# -- categories ---------------------------------------------------------------------------------
def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**63 else repr(float(x))


def category_text(values) -> pd.Series:
    """Each category as its text (object Series; None where missing): see the module docstring."""
    s = _series(values)
    if len(s) <= SMALL and (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
        # a request's few values: one at a time, the same rules, no pandas steps
        return pd.Series([None if _missing_cell(x) else _category_value(x) for x in s.tolist()], dtype=object)
    if pd.api.types.is_bool_dtype(s):
        out = np.where(s.to_numpy(dtype=bool, na_value=False), "true", "false").astype(object)
        out[s.isna().to_numpy()] = None
        return pd.Series(out, dtype=object)
    if pd.api.types.is_integer_dtype(s):
        out = s.astype(str).to_numpy(dtype=object)
        out[s.isna().to_numpy()] = None
        return pd.Series(out, dtype=object)
    if pd.api.types.is_float_dtype(s):
        x = s.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        out = np.empty(len(x), dtype=object)
        finite = np.isfinite(x)
        integral = finite & (np.floor(x) == x) & (np.abs(x) < 2**53)
        out[integral] = x[integral].astype("int64").astype(str)
        rest = finite & ~integral
        out[rest] = [repr(float(v)) for v in x[rest]]
        out[np.isinf(x)] = [repr(float(v)) for v in x[np.isinf(x)]]
        out[np.isnan(x)] = None
        return pd.Series(out, dtype=object)

    missing = s.isna().to_numpy()
    if isinstance(s.dtype, pd.StringDtype) or pd.api.types.infer_dtype(s, skipna=True) == "string":
        # text alone (ids, codes, as a CSV gives them): `_category_value` changes only the empty
        # text and a text with a dot ("7.0"), so only those take its per-value rule
        out = np.array(s.to_numpy(dtype=object, na_value=None), dtype=object)  # writable
        dotted = s.str.contains(".", regex=False).to_numpy(dtype=bool, na_value=False)
        for i in np.flatnonzero(dotted):
            out[i] = _category_value(out[i])
        out[s.eq("").to_numpy(dtype=bool, na_value=False) | missing] = None
        return pd.Series(out, dtype=object)
    out = np.empty(len(s), dtype=object)
    values = s.to_numpy(dtype=object)
    out[~missing] = [_category_value(x) for x in values[~missing]]
    return pd.Series(out, dtype=object)


def _category_value(x):
    """One present value of a category column as its text (None for empty text)."""
    if isinstance(x, str):
        if not x:
            return None
        return x.split(".", 1)[0] if _INTEGRAL_TEXT.match(x) else x
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return None if np.isnan(x) else _number_text(x)
    if isinstance(x, bytes):
        return _category_value(x.decode("utf-8", "backslashreplace"))
    return str(x)


def _missing_cell(x) -> bool:
    """What `Series.isna` calls missing, for one value (None, NaN, NA, NaT)."""
    return x is None or x is pd.NA or x is pd.NaT or (isinstance(x, float) and x != x)


# -- datetimes ----------------------------------------------------------------------------------
def _wall_clock_seconds(parsed: pd.Series) -> np.ndarray:
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    # microseconds: years 1 to 9999 fit (nanoseconds overflow before 1677 and after 2262)
    micro = parsed.dt.as_unit("us").to_numpy(dtype="datetime64[us]").astype("int64")
    seconds = micro.astype("float64") / 1e6
    seconds[parsed.isna().to_numpy()] = np.nan
    return seconds


def _one_datetime(text: str, fmt: str | None) -> float:
    """A date/time string on its own (never a neighbour's format): wall-clock seconds or NaN."""
    try:
        ts = pd.to_datetime(text, format=fmt) if fmt else pd.Timestamp(text)
    except (TypeError, ValueError, OverflowError):
        return np.nan
    if ts is pd.NaT:
        return np.nan
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return _wall_clock_seconds(pd.Series([ts]))[0]


def _parse_texts(text: pd.Series, fmt: str | None) -> np.ndarray:
    """Seconds of date/time strings (NaN where unreadable), vectorised where pandas can."""
    try:
        parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce")
        seconds = _wall_clock_seconds(parsed)
    except (TypeError, ValueError, OverflowError):  # time zones that differ from row to row
        seconds = np.full(len(text), np.nan)
    retry = np.flatnonzero(np.isnan(seconds))
    for i in retry:  # one at a time: mixed offsets, or (without a format) other layouts
        seconds[i] = _one_datetime(text.iloc[i], fmt)
    return seconds


def read_datetimes(values, fmt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since 1970 of the wall-clock time of each value (NaN where missing) and per-row
    problems: see the module docstring. `fmt`: the column's date format (strptime codes)."""
    s = _series(values)
    n = len(s)
    if n <= SMALL and _is_text_dtype(s):  # a request's few values: one at a time, same rules
        pairs = [_datetime_value(x, fmt) for x in s.to_numpy()]
        return (np.array([p[0] for p in pairs], dtype="float64"),
                np.array([p[1] for p in pairs] + [None], dtype=object)[:n])
    problems = np.full(n, None, dtype=object)
    if pd.api.types.is_bool_dtype(s):
        for i in np.flatnonzero(s.notna().to_numpy()):
            problems[i] = _boolean_date(s.iloc[i])
        return np.full(n, np.nan), problems
    if pd.api.types.is_numeric_dtype(s):  # seconds since 1970
        v = s.to_numpy(dtype="float64", na_value=np.nan, copy=True)
    elif pd.api.types.is_datetime64_any_dtype(s):
        return _wall_clock_seconds(s), problems
    else:
        v = np.full(n, np.nan)
        empty = _empty(s)
        # Python objects other than text (booleans, numbers, timestamps) are read one by one by
        # their kind; a column of text alone (as a CSV gives) skips that per-row pass.
        objects = s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) not in ("string", "empty")
        for i in np.flatnonzero(~empty) if objects else ():
            x = s.iloc[i]
            if isinstance(x, (bool, np.bool_)):
                problems[i] = _boolean_date(x)
            elif isinstance(x, (int, float, np.integer, np.floating)):
                v[i] = float(x)
            elif isinstance(x, (pd.Timestamp, np.datetime64)) or hasattr(x, "isoformat"):
                v[i] = _one_datetime(x, None)
        text_rows = np.flatnonzero(~empty & np.isnan(v) & (problems == None))  # noqa: E711
        if len(text_rows):
            text = s.iloc[text_rows].astype(str).str.strip()
            lower = text.str.lower()
            relative = lower.isin(RELATIVE_DATES).to_numpy()
            plain = text.str.match(_NUMBER_TEXT.pattern).to_numpy() & (fmt is None or not
                                                                       _digits_only_format(fmt))
            v[text_rows[plain]] = text[plain].astype("float64").to_numpy()
            rest = ~relative & ~plain
            v[text_rows[rest]] = _parse_texts(text[rest].reset_index(drop=True), fmt)
            for i in text_rows[relative]:
                problems[i] = _relative_date(s.iloc[i])
            for i in text_rows[rest & np.isnan(v[text_rows])]:
                problems[i] = _not_a_date(s.iloc[i], fmt)
    with np.errstate(invalid="ignore"):
        beyond = np.flatnonzero(np.abs(v) > MAX_ABS_VALUE)  # infinities too
    for i in beyond:
        v[i], problems[i] = _seconds_value(float(v[i]), s.iloc[i])
    return v, problems


_PATTERN_CODES = {"%d": r"\d{1,2}", "%m": r"\d{1,2}", "%Y": r"\d{4}", "%y": r"\d{2}", "%H": r"\d{1,2}",
                  "%I": r"\d{1,2}", "%M": r"\d{2}", "%S": r"\d{2}", "%f": r"\d{1,6}", "%p": "(AM|PM|am|pm)",
                  "%j": r"\d{1,3}"}


def strptime_pattern(fmt: str) -> str:
    """A regular expression for the text of a date format (for an API schema): the shape of
    the text, not the calendar (31/02 matches and is refused when read)."""
    parts = re.split(r"(%[a-zA-Z])", fmt)
    return "^" + "".join(_PATTERN_CODES.get(p, ".+" if p.startswith("%") else re.escape(p))
                         for p in parts) + "$"


SMALL = 32  # up to this many values, `read_datetimes` reads them one by one (no pandas overhead)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?$")
_EPOCH = datetime.datetime(1970, 1, 1)


def _datetime_value(x, fmt: str | None) -> tuple[float, str | None]:
    """One value by the rules of `read_datetimes`: (seconds or NaN, problem or None)."""
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NaT:
        return np.nan, None
    if isinstance(x, (bool, np.bool_)):
        return np.nan, _boolean_date(x)
    if isinstance(x, (int, float, np.integer, np.floating)):
        return _seconds_value(float(x), x)
    if not isinstance(x, str):
        if isinstance(x, (pd.Timestamp, np.datetime64)) or hasattr(x, "isoformat"):
            return _one_datetime(x, None), None
        x = str(x)
    text = x.strip()
    if not text:
        return np.nan, None
    if text.lower() in RELATIVE_DATES:
        return np.nan, _relative_date(x)
    if _NUMBER_TEXT.match(text) and (fmt is None or not _digits_only_format(fmt)):
        return _seconds_value(float(text), x)
    seconds = np.nan
    try:
        if fmt is not None:
            when = datetime.datetime.strptime(text, fmt)
        elif _ISO.match(text):
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            when = None
        if when is not None:
            seconds = (when.replace(tzinfo=None) - _EPOCH).total_seconds()
    except ValueError:
        pass
    if np.isnan(seconds):
        seconds = float(_parse_texts(pd.Series([text]), fmt)[0])
    if np.isnan(seconds):
        return np.nan, _not_a_date(x, fmt)
    return seconds, None


def _boolean_date(x) -> str:
    return f"value {shown(x)!r} is a boolean, not a date/time"


def _relative_date(x) -> str:
    return (f"value {shown(x)!r} is a relative date; give the date/time itself (the score must not "
            "depend on when it is computed)")


def _not_a_date(x, fmt: str | None) -> str:
    want = f"the column's date format {fmt!r}" if fmt else "a date/time"
    return f"value {shown(x)!r} is not {want}"


def _seconds_value(v: float, x) -> tuple[float, str | None]:
    """A number of seconds, or NaN and why not (not finite, or beyond `MAX_ABS_VALUE`)."""
    if np.isinf(v):
        return np.nan, f"value {shown(x)!r} is not finite"
    if abs(v) > MAX_ABS_VALUE:
        return np.nan, out_of_range_reason(v) + " as seconds since 1970"
    return v, None


def _digits_only_format(fmt: str) -> bool:
    """A format whose dates are plain digits (e.g. %Y%m%d): such text is a date, not seconds."""
    return re.fullmatch(r"(%[YmdHMSyjf])+", fmt) is not None


# -- inferring a date format ---------------------------------------------------------------------
_DATE_ORDERS = (("%m", "%d", "%Y"), ("%d", "%m", "%Y"), ("%m", "%d", "%y"), ("%d", "%m", "%y"),
                ("%Y", "%m", "%d"))
_TIMES = ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", "T%H:%M:%S", " %I:%M %p", " %I:%M:%S %p")


def infer_date_format(strings: pd.Series, share: float = 0.95) -> tuple[str | None, str]:
    """The format that reads at least `share` of `strings` (a sample of a column), and a note.

    ISO 8601 first (None: read as ISO 8601, or value by value); else the day/month/year orders
    with '/', '.' and '-' and common times. When both day-first and month-first read every
    value (no day above 12), month-first is kept and the note says so."""
    text = strings.dropna().astype(str).str.strip()
    text = text[text != ""].head(2000)
    if text.empty:
        return None, ""
    iso = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if iso.notna().mean() >= share:
        return None, ""
    readable = []
    for sep in [c for c in "/.-" if c in text.iloc[0]]:
        for order in _DATE_ORDERS:
            for t in _TIMES:
                fmt = sep.join(order) + t
                ok = pd.to_datetime(text, format=fmt, errors="coerce").notna().mean()
                if ok >= share:
                    readable.append((ok, fmt))
    if not readable:
        return None, ""
    best = max(r[0] for r in readable)
    fmts = [f for ok, f in readable if ok == best]
    note = ""
    if len(fmts) > 1 and any(f.startswith("%d") for f in fmts) and any(f.startswith("%m") for f in fmts):
        note = "day and month are both <= 12 in every value: read month first; set format if not"
    return fmts[0], note
