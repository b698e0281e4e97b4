"""The input schema and its checks: every problem is reported with file, column, row and value."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aedetect.errors import DataError

# The largest magnitude a feature value may have. The network computes in float32 (largest
# value about 3.4e38) and its layers multiply and add; a raw value beyond this bound would
# overflow to inf on the way and score NaN. One rule everywhere (readers, the Python API, the
# batch scorer, the service): such a value is refused as a bad value with its reason, never
# scored as NaN. 1e15 leaves 23 orders of magnitude of headroom and is far above any amount,
# count or millisecond timestamp.
MAX_ABS_VALUE = 1e15


def out_of_range_reason(value) -> str:
    return f"value {_shown(value)!r} is out of range (the model accepts magnitudes up to {MAX_ABS_VALUE:g})"


@dataclass(frozen=True)
class Schema:
    """Numeric feature columns in a fixed order, plus an optional 0/1 label column."""

    features: tuple[str, ...]
    label: str | None = None
    time: str | None = None  # seconds since the first row, used by time splits and alert budgets
    log_columns: tuple[str, ...] = field(default=())  # heavy-tailed, non-negative columns
    periodic_columns: tuple[tuple[str, float], ...] = field(default=())  # (column, period)


CREDITCARD = Schema(
    features=("Time", *(f"V{i}" for i in range(1, 29)), "Amount"),
    label="Class",
    time="Time",
    log_columns=("Amount",),
    periodic_columns=(("Time", 86400.0),),
)


def _quote(names) -> str:
    return ", ".join(repr(n) for n in names)


def validate_frame(
    df: pd.DataFrame,
    schema: Schema = CREDITCARD,
    *,
    source: str = "input",
    require_label: bool = True,
    allow_extra: bool = False,
) -> pd.DataFrame:
    """Check columns, numeric values and labels; return a frame with float64 features.

    Row numbers in messages are 1-based data rows (the header is not counted), so in a CSV
    file row N is on line N + 1.
    """
    if len(df.columns) == 0 or len(df) == 0:
        raise DataError(f"{source}: the file has no data rows; expected columns {_quote(schema.features)}")
    expected = list(schema.features) + ([schema.label] if require_label and schema.label else [])
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {_quote(missing)}; expected {len(expected)} columns "
            f"{_quote(expected)}, found {len(df.columns)}"
        )
    known = set(expected) | ({schema.label} if schema.label else set())
    extra = [c for c in df.columns if c not in known]
    if extra and not allow_extra:
        raise DataError(
            f"{source}: unexpected column(s) {_quote(extra)}; expected exactly {_quote(expected)}"
        )
    out = df.copy()
    features = list(schema.features)
    if not _all_finite_numbers(df, features):  # the per-column checks find and name the first bad value
        for col in features:
            out[col] = _numeric_column(df[col], col, source)
    else:
        for col in features:
            if out[col].dtype != "float64":
                out[col] = out[col].astype("float64")
    if schema.label and schema.label in df.columns:
        out[schema.label] = _label_column(df[schema.label], schema.label, source)
    return out


def _all_finite_numbers(df: pd.DataFrame, columns: list[str]) -> bool:
    """One vectorised check for the common case: numeric columns, every value finite."""
    if not all(pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in columns):
        return False
    try:
        values = df[columns].to_numpy(dtype="float64")
    except (TypeError, ValueError):  # e.g. a nullable integer column holding <NA>
        return False
    with np.errstate(invalid="ignore"):
        return bool((np.abs(values) <= MAX_ABS_VALUE).all())  # False for NaN and inf too


def _shown(value):
    """A cell as a plain Python value, so messages say `inf`, not `np.float64(inf)`; text is
    cut to 40 characters so a binary or huge cell is not echoed whole."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, str) and len(value) > 40:
        value = value[:40] + "..."
    return value


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _numeric_column(s: pd.Series, col: str, source: str) -> pd.Series:
    values = pd.to_numeric(s, errors="coerce")
    raw_missing = s.isna().to_numpy()
    if raw_missing.any():
        i = _first_bad(raw_missing)
        raise DataError(
            f"{source}: column {col!r}, row {i + 1}: empty value "
            f"({int(raw_missing.sum())} empty value(s) in this column); every feature must be a number"
        )
    bad = values.isna().to_numpy()
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{source}: column {col!r}, row {i + 1}: value {_shown(s.iloc[i])!r} is not a number "
            f"({int(bad.sum())} such value(s) in this column)"
        )
    values = values.astype("float64")
    inf = ~np.isfinite(values.to_numpy())
    if inf.any():
        i = _first_bad(inf)
        raise DataError(f"{source}: column {col!r}, row {i + 1}: value {_shown(s.iloc[i])!r} is not finite")
    huge = np.abs(values.to_numpy()) > MAX_ABS_VALUE
    if huge.any():
        i = _first_bad(huge)
        raise DataError(f"{source}: column {col!r}, row {i + 1}: {out_of_range_reason(values.iloc[i])} "
                        f"({int(huge.sum())} such value(s) in this column)")
    return values


def _label_column(s: pd.Series, col: str, source: str) -> pd.Series:
    values = pd.to_numeric(s, errors="coerce")
    ok = values.isin([0, 1]).to_numpy()
    if not ok.all():
        i = _first_bad(~ok)
        raise DataError(
            f"{source}: column {col!r}, row {i + 1}: label must be 0 (normal) or 1 (anomaly), "
            f"got {_shown(s.iloc[i])!r} ({int((~ok).sum())} such row(s))"
        )
    return values.astype("int8")


def column_problems(raw: pd.Series, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised check of one feature column, for callers that skip bad rows instead of stopping.

    Returns float64 values (NaN where bad) and a per-row reason (None where the value is good).
    """
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan, copy=True)
    reasons = np.full(len(values), None, dtype=object)
    empty = raw.isna().to_numpy()
    not_number = np.isnan(values) & ~empty
    infinite = np.isinf(values)
    with np.errstate(invalid="ignore"):
        huge = np.abs(values) > MAX_ABS_VALUE
    huge &= ~infinite
    for i in np.flatnonzero(empty):
        reasons[i] = f"column {col!r}: empty value"
    for mask, what in ((not_number, "is not a number"), (infinite, "is not finite")):
        for i in np.flatnonzero(mask):
            reasons[i] = f"column {col!r}: value {_shown(raw.iloc[i])!r} {what}"
    for i in np.flatnonzero(huge):
        reasons[i] = f"column {col!r}: {out_of_range_reason(values[i])}"
    values[empty | not_number | infinite | huge] = np.nan
    return values, reasons
