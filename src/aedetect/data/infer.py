"""Infer a `DatasetSchema` from a table: each column's type, then its role.

Types, from a sample of rows (`SAMPLE_ROWS`):
  boolean      a bool column, integers that are only 0 and 1, or text that is only true/false
               (or yes/no), any case
  datetime     a timestamp column, or strings of which at least 95% parse as dates/times; the
               text's format is inferred and stored (`ColumnSpec.format`), so a day-first date
               reads day-first everywhere
  numeric      text of which at least 90% parses as numbers (the rest are bad values, named
               by row when the table is checked)
  categorical  other strings, or integers with at most `MAX_INT_LEVELS` distinct values
  integer      other integers
  numeric      floats
Roles:
  label     the column named by `label_column`, else the first 0/1 column named like
            class / label / is_fraud / fraud / y / target / anomaly / outlier
  time      `time_column`, else a numeric or datetime column named like time / timestamp /
            datetime / date / event_time / ts, else the first datetime column. A time column (in
            seconds or datetimes) gets sin/cos of the hour of day; with two weeks or more, of
            the weekday too: a period is learnt only from data that spans two of them (a
            datetime feature column likewise)
  id        string or integer columns named id / *_id / *Id / *_key / uuid, in any case
            (CUSTOMER_ID, TerminalId), or holding a distinct value per row
  excluded  constant or empty columns; columns that are set only on labelled anomalies (e.g. a
            fraud-kind column: a model that reads it would see the answer); and monotone
            counters (seconds or days since the start: every later row would be out of range):
            numeric or integer columns, other than the time column, that never decrease in file
            order or rank with the time column (|Spearman| > `COUNTER_CORRELATION`), taking at
            least half of the distinct values their range (or the row count) allows
  feature   every other column
Log: a numeric feature is log1p-transformed before standardising when it is non-negative, has
more than 10 distinct values and a skewness above `LOG_SKEW` (amounts, counts): on such columns a
few huge values would otherwise dominate the squared error.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from pydantic import ValidationError
from scipy import stats

from aedetect.data.schema import DAY, WEEK, ColumnSpec, DatasetSchema
from aedetect.data.values import FALSE_TEXT, TRUE_TEXT, infer_date_format, read_datetimes
from aedetect.errors import DataError

SAMPLE_ROWS = 100_000
MAX_INT_LEVELS = 10
LOG_SKEW = 2.0
NUMERIC_SHARE = 0.9  # text columns where at least this share parses as numbers are numeric
LABEL_NAMES = ("class", "label", "is_fraud", "isfraud", "fraud", "y", "target", "is_anomaly",
               "anomaly", "outlier")
TIME_NAMES = ("time", "timestamp", "datetime", "date", "event_time", "ts", "transaction_time",
              "created_at", "trans_date_trans_time")
# Ids in any case (id, _ID, Id, _key, uuid), and camel case (customerId, TerminalID).
_ID = re.compile(r"(^id$|_id$|^key$|_key$|^uuid$|_uuid$)", re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID|Key|KEY)$")
COUNTER_CORRELATION = 0.99
DISTINCT = "a distinct value per row"


def infer_schema(
    df: pd.DataFrame,
    *,
    label_column: str | None = None,
    time_column: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> DatasetSchema:
    """Infer each column's type and role from (a sample of) `df`; see the module docstring."""
    if len(df.columns) == 0 or len(df) == 0:
        raise DataError("the table has no data rows; cannot infer a schema")
    sample = df if len(df) <= sample_rows else df.sample(sample_rows, random_state=seed)
    types = {str(c): _type(sample[c]) for c in df.columns}
    sample = sample.rename(columns=str)
    label = label_column or _find_label(sample, types)
    time = time_column or _find_time(sample, types, exclude=label)
    clock_seconds = _seconds(sample[time], types[time][0]) if time is not None else None
    cols = []
    for name, (kind, why) in types.items():
        s = sample[name]
        spec = ColumnSpec(name=name, type=kind, note=why)
        if kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(s):
            spec.format, fmt_note = infer_date_format(s)
            spec.note = "; ".join(n for n in (why, f"format {spec.format}" if spec.format else "",
                                              fmt_note) if n)
        if name == label:
            spec.role, spec.note = "label", "given" if label_column else "named like a label, 0/1"
        elif name == time:
            spec.role, spec.note = "time", "given" if time_column else _time_note(kind)
            if kind in ("numeric", "integer", "datetime"):
                spec.periods = _clock(s, kind, spec.format)
        else:
            spec.role, note = _role(s, kind, name, sample[label] if label else None)
            # A counter before "a distinct value per row": a seconds counter is no id either.
            if (spec.role == "feature" or note == DISTINCT) and _counter(s, kind, clock_seconds):
                spec.role, note = "excluded", "monotone counter: every later row would be out of range"
            spec.note = note or why
            if spec.role == "feature" and kind == "datetime":
                spec.periods = _clock(s, kind, spec.format)
            if spec.role == "feature" and kind in ("numeric", "integer"):
                spec.log, log_note = _heavy_tailed(s)
                spec.note = log_note or spec.note
        cols.append(spec)
    features = [c.name for c in cols if c.role in ("feature", "time")]
    # Missing feature values: imputed when the table has some; otherwise one is an error.
    missing = "impute" if sample[features].isna().to_numpy().any() else "error"
    for c in cols:  # the schema table says why such a column still trains, and how
        share = float(sample[c.name].isna().mean()) if c.name in features else 0.0
        if share > 0:
            c.note = "; ".join(n for n in (c.note, missing_note(c, share)) if n)
    try:
        return DatasetSchema(columns=cols, missing=missing)
    except ValidationError as exc:
        raise DataError(f"schema: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def missing_note(spec: ColumnSpec, share: float) -> str:
    """How the preprocessing reads a feature column's missing values (`aedetect.model.preprocessing`),
    for the schema table: a category of their own, or the training median plus an indicator."""
    pct = f"{100 * share:.2g}%" if share >= 0.001 else "<0.1%"
    if spec.type == "categorical":
        return f"{pct} missing: their own category, (missing)"
    return f"{pct} missing: imputed with the training median, flagged in {spec.name}:missing"


def _type(s: pd.Series) -> tuple[str, str]:
    if pd.api.types.is_bool_dtype(s):
        return "boolean", ""
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime", ""
    if pd.api.types.is_integer_dtype(s):
        values = s.dropna().unique()
        if len(values) <= 2 and set(np.asarray(values).tolist()) <= {0, 1}:
            return "boolean", "0/1"
        if len(values) <= MAX_INT_LEVELS:
            return "categorical", f"integer, {len(values)} distinct values"
        return "integer", ""
    if pd.api.types.is_numeric_dtype(s):
        values = s.dropna()
        if len(values) and values.isin([0, 1]).all() and values.nunique() == 2:
            return "boolean", "0/1"
        return "numeric", ""
    strings = s.dropna().astype(str)
    words = set(strings.str.strip().str.lower().unique()[:3])
    if len(words) == 2 and words <= set(TRUE_TEXT[:2] + FALSE_TEXT[:2]):
        return "boolean", "true/false as text"
    # Numbers with a few stray values (a typo, "n/a") are a numeric column with bad values, which
    # the checks then name by row, not a column of categories.
    numbers = pd.to_numeric(strings, errors="coerce")
    if len(strings) and numbers.notna().mean() >= NUMERIC_SHARE:
        return "numeric", "numbers as text"
    if len(strings) and _looks_like_dates(strings):
        return "datetime", "dates/times as text"
    return "categorical", "text"


def _looks_like_dates(strings: pd.Series) -> bool:
    head = strings.head(1000)
    if not head.str.contains(r"\d[-/:.]\d|\d{4}-\d", regex=True).mean() > 0.95:
        return False
    if pd.to_numeric(head, errors="coerce").notna().mean() > 0.5:
        return False
    values, _ = read_datetimes(head.reset_index(drop=True))  # offsets that differ by row too
    return bool((~np.isnan(values)).mean() >= 0.95)


def _find_label(sample: pd.DataFrame, types: dict) -> str | None:
    for name in sample.columns:
        if name.lower() in LABEL_NAMES and types[name][0] in ("boolean", "integer", "numeric"):
            values = pd.to_numeric(sample[name].dropna().astype("int64", errors="ignore"),
                                   errors="coerce")
            if len(values) and values.isin([0, 1]).all():
                return name
    return None


def _find_time(sample: pd.DataFrame, types: dict, exclude: str | None) -> str | None:
    for name in sample.columns:
        if name != exclude and name.lower() in TIME_NAMES and \
                types[name][0] in ("numeric", "integer", "datetime"):
            return name
    return next((n for n in sample.columns if n != exclude and types[n][0] == "datetime"), None)


def _time_note(kind: str) -> str:
    return "datetime" if kind == "datetime" else "named like a time, in seconds"


def _role(s: pd.Series, kind: str, name: str, label: pd.Series | None) -> tuple[str, str]:
    present = s.notna()
    if not present.any():
        return "excluded", "empty"
    if s.nunique(dropna=False) <= 1:
        return "excluded", "constant"
    if label is not None and _only_on_anomalies(s, label):
        return "excluded", "set only on anomalies: derived from the label"
    if kind in ("categorical", "integer"):
        if _ID.search(name) or _CAMEL_ID.search(name):
            repeats = s.nunique() <= 0.5 * s.notna().sum()
            return "id", ("named like an id; repeats: an entity for history features? "
                          "(--entity-columns)" if repeats else "named like an id")
        if len(s) >= 50 and s.nunique() >= 0.99 * len(s):
            return "id", DISTINCT
    return "feature", ""


def _seconds(s: pd.Series, kind: str, fmt: str | None = None) -> np.ndarray:
    """A time column's values as seconds (NaN where missing or unreadable)."""
    if kind == "datetime":
        if fmt is None and not pd.api.types.is_datetime64_any_dtype(s):
            fmt = infer_date_format(s)[0]
        return read_datetimes(s.reset_index(drop=True), fmt)[0]
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")


def _clock(s: pd.Series, kind: str, fmt: str | None) -> list[float]:
    """The periods of a time column: the day, and the week when the data spans two weeks (a
    period is learnt only from two of them: from five days, every Monday is unseen)."""
    v = _seconds(s, kind, fmt)
    v = v[np.isfinite(v)]
    span = float(v.max() - v.min()) if v.size else 0.0
    return [DAY, WEEK] if span >= 2 * WEEK else [DAY]


def _counter(s: pd.Series, kind: str, clock: np.ndarray | None) -> bool:
    """A monotone counter (seconds or days since the start): numbers that never decrease in file
    order (or rank with the time column `clock`), with at least half of the distinct values their
    range allows, so every later row would be out of the training range."""
    if kind not in ("numeric", "integer", "categorical") or not pd.api.types.is_numeric_dtype(s):
        return False
    in_order = s.sort_index(kind="stable")  # a sample of a large table: back in file order
    v = pd.to_numeric(in_order, errors="coerce").to_numpy(dtype="float64")
    ok = np.isfinite(v)
    x = v[ok]
    distinct = len(np.unique(x))
    if distinct < 3:
        return False
    room = len(x)
    if np.all(x == np.round(x)):  # whole numbers: a day counter takes every value of its range
        room = min(room, int(x.max() - x.min()) + 1)
    if distinct < 0.5 * room:
        return False
    d = np.diff(x)
    if (d >= 0).all() or (d <= 0).all():
        return True
    if clock is None:
        return False
    t = pd.Series(clock, index=s.index).reindex(in_order.index).to_numpy(dtype="float64")
    both = ok & np.isfinite(t)
    if both.sum() < 10:
        return False
    rho = stats.spearmanr(v[both], t[both]).statistic
    return bool(np.isfinite(rho) and abs(rho) > COUNTER_CORRELATION)


def _only_on_anomalies(s: pd.Series, label: pd.Series) -> bool:
    y = pd.to_numeric(label, errors="coerce")
    normal, anomaly = s[y == 0], s[y == 1]
    if len(anomaly) == 0 or len(normal) == 0:
        return False
    # Missing or a single value on every normal row, and something else on most anomalies.
    fill = normal.iloc[0] if normal.notna().all() and normal.nunique() == 1 else None
    if normal.notna().any() and fill is None:
        return False
    other = anomaly.notna() if fill is None else (anomaly != fill)
    return bool(other.mean() > 0.5)


def _heavy_tailed(s: pd.Series) -> tuple[bool, str]:
    v = pd.to_numeric(s, errors="coerce").dropna().to_numpy(dtype="float64")
    if len(v) < 20 or v.min() < 0 or len(np.unique(v[:10_000])) <= 10:
        return False, ""
    sd = v.std()
    skew = float(((v - v.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0
    if skew > LOG_SKEW:
        return True, f"log1p: non-negative, skewness {skew:.1f}"
    return False, ""


def resolve_schema(
    df: pd.DataFrame,
    *,
    schema_file: str | None = None,
    label_column: str | None = None,
    time_column: str | None = None,
    id_columns: list[str] | tuple[str, ...] = (),
    exclude_columns: list[str] | tuple[str, ...] = (),
    categorical_columns: list[str] | tuple[str, ...] = (),
    entity_columns: list[str] | tuple[str, ...] = (),
) -> DatasetSchema:
    """The schema of `df`: read from `schema_file`, or inferred; then the overrides applied."""
    if schema_file is not None:
        schema = DatasetSchema.from_file(schema_file)
    else:
        names = [str(c) for c in df.columns]
        for opt, name in (("--label-column", label_column), ("--time-column", time_column)):
            if name is not None and name not in names:
                raise DataError(f"{opt} {name!r} is not a column of the data; its columns are "
                                f"{', '.join(repr(n) for n in names)}")
        schema = infer_schema(df, label_column=label_column, time_column=time_column)
    return schema.with_overrides(label_column=label_column, time_column=time_column,
                                 id_columns=id_columns, exclude_columns=exclude_columns,
                                 categorical_columns=categorical_columns, entity_columns=entity_columns)
