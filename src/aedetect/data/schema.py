"""The dataset schema and its checks: every problem is reported with file, column, row and value.

`DatasetSchema` says, for any table, each column's role (feature, label, time, id, excluded) and
type (numeric, integer, boolean, categorical, datetime). It is the one description of a table
from the reader to the stored model: `aedetect.data.infer` infers one, a model folder stores
its own, and the credit-card layout is one (`aedetect.data.creditcard.CREDITCARD`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


def _quote(names) -> str:
    return ", ".join(repr(n) for n in names)


def validate_frame(
    df: pd.DataFrame,
    schema: DatasetSchema,
    *,
    source: str = "input",
    require_label: bool = True,
    allow_extra: bool = False,
) -> pd.DataFrame:
    """Check a table of numbers (every feature a finite number, e.g. the credit-card file):
    columns, values and labels; return a frame with float64 features. `check_table` is the
    check for tables of any column type.

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
    known = set(expected) | set(schema.names)
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


# -- the dataset schema: every column's role and type, inferred or declared, stored with a model --
Role = Literal["feature", "label", "time", "id", "excluded"]
ColumnType = Literal["numeric", "integer", "boolean", "categorical", "datetime"]
DAY, WEEK = 86_400.0, 604_800.0


class ColumnSpec(BaseModel):
    """One column: its role, its type and, for numeric features, whether it is log-transformed."""

    model_config = ConfigDict(extra="forbid")

    name: str
    role: Role = "feature"
    type: ColumnType = "numeric"
    log: bool = False  # log1p before standardising (heavy-tailed, non-negative: see infer.py)
    # A clock: sin/cos of the phase of these periods (seconds). The time column's default
    # (None) is a day; [] reads it as a plain number.
    periods: list[float] | None = None
    note: str = ""  # why inference chose this role or type; shown in the schema table

    @model_validator(mode="after")
    def _finite_periods(self) -> ColumnSpec:
        """A period divides the phase: 0, a negative, NaN or an infinite one is refused."""
        bad = [p for p in self.periods or [] if not (np.isfinite(p) and p > 0)]
        if bad:
            raise ValueError(f"column {self.name!r}: periods must be finite numbers of seconds > 0; "
                             f"got {bad[0]}")
        return self

    @property
    def clock_periods(self) -> list[float] | None:
        """The periods a numeric column is read by (sin/cos of each phase); None: as a number."""
        if self.type not in ("numeric", "integer"):
            return None
        if self.periods is None:
            return [DAY] if self.role == "time" else None
        return self.periods or None


class DatasetSchema(BaseModel):
    """The columns of a table and what each is for. The order of feature columns is kept."""

    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSpec]
    time_feature: bool = True  # the time column is also a feature (hour of day, day of week)
    missing: Literal["impute", "error"] = "impute"  # missing feature values: median + indicator
    max_categories: int = Field(20, ge=1)  # one-hot up to this many categories, frequency above

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSchema:
        names = [c.name for c in self.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"column(s) {_quote(dup)} appear more than once")
        for role in ("label", "time"):
            cols = [c.name for c in self.columns if c.role == role]
            if len(cols) > 1:
                raise ValueError(f"at most one {role} column; got {_quote(cols)}")
        for c in self.columns:
            if c.role == "label" and c.type not in ("boolean", "integer", "numeric"):
                raise ValueError(f"label column {c.name!r} must hold 0/1; its type is {c.type}")
            if c.role == "time" and c.type not in ("numeric", "integer", "datetime"):
                raise ValueError(f"time column {c.name!r} must be seconds or a datetime; "
                                 f"its type is {c.type}")
            if c.log and c.type not in ("numeric", "integer"):
                raise ValueError(f"column {c.name!r}: log applies to numeric columns, not {c.type}")
        if not self.features:
            raise ValueError("the schema has no feature column")
        return self

    # -- views ----------------------------------------------------------------------------------
    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def label(self) -> str | None:
        return next((c.name for c in self.columns if c.role == "label"), None)

    @property
    def time(self) -> str | None:
        return next((c.name for c in self.columns if c.role == "time"), None)

    @property
    def ids(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "id"]

    @property
    def feature_columns(self) -> list[ColumnSpec]:
        """The columns the model reads, in table order (the time column too, by default)."""
        return [c for c in self.columns
                if c.role == "feature" or (c.role == "time" and self.time_feature)]

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.feature_columns]

    def time_seconds(self, df: pd.DataFrame) -> np.ndarray | None:
        """The time column as float seconds (datetimes: seconds since 1970, wall-clock time)."""
        if self.time is None:
            return None
        return as_seconds(df[self.time], self.time)

    # -- overrides ------------------------------------------------------------------------------
    def with_overrides(
        self,
        *,
        label_column: str | None = None,
        time_column: str | None = None,
        id_columns: Sequence[str] = (),
        exclude_columns: Sequence[str] = (),
        categorical_columns: Sequence[str] = (),
    ) -> DatasetSchema:
        """A copy with the user's choices applied; a name that is not a column is an error."""
        given = [label_column, time_column, *id_columns, *exclude_columns, *categorical_columns]
        unknown = [n for n in given if n is not None and n not in self.names]
        if unknown:
            raise DataError(f"no column(s) {_quote(unknown)} in the data; its columns are "
                            f"{_quote(self.names)}")
        cols = [c.model_copy() for c in self.columns]
        for c in cols:
            if label_column is not None and c.role == "label" and c.name != label_column:
                c.role, c.note = "excluded", f"not the label (--label-column {label_column})"
            if time_column is not None and c.role == "time" and c.name != time_column:
                c.role, c.note = "feature", "not the time column"
                c.periods = None if c.type != "datetime" else c.periods
            if c.name == label_column:
                c.role, c.log, c.note = "label", False, "given"
                if c.type not in ("boolean", "integer", "numeric"):
                    raise DataError(f"--label-column {c.name!r} holds {c.type} values; a label "
                                    "must be 0 (normal) or 1 (anomaly)")
            if c.name == time_column:
                if c.type not in ("numeric", "integer", "datetime"):
                    raise DataError(f"--time-column {c.name!r} holds {c.type} values; expected "
                                    "seconds or datetimes")
                c.role, c.log, c.note = "time", False, "given"
                if c.type != "datetime" and not c.periods:
                    c.periods = [DAY]
            if c.name in categorical_columns:
                c.type, c.log, c.note = "categorical", False, "given"
                if c.role == "id":
                    c.role = "feature"
            if c.name in id_columns:
                c.role, c.note = "id", "given"
            if c.name in exclude_columns:
                c.role, c.note = "excluded", "given"
        try:
            return DatasetSchema(columns=cols, time_feature=self.time_feature, missing=self.missing,
                                 max_categories=self.max_categories)
        except ValidationError as exc:
            raise DataError(f"schema: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None

    # -- files ----------------------------------------------------------------------------------
    def to_file(self, path: str | os.PathLike) -> Path:
        """Write YAML (.yaml/.yml) or JSON (.json), atomically."""
        path = Path(path)
        data = self.model_dump(mode="json", exclude_defaults=True)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False, width=100)
        elif path.suffix.lower() == ".json":
            text = json.dumps(data, indent=2) + "\n"
        else:
            raise DataError(f"{path}: a schema file must end in .yaml, .yml or .json")
        from aedetect.files import write_text_atomic

        return write_text_atomic(path, text)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DatasetSchema:
        from aedetect.files import read_yaml_or_json

        path = Path(path)
        data = read_yaml_or_json(path, "schema file")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise DataError(f"{path}: {loc or 'schema'}: {first['msg']}") from None

    @classmethod
    def of_numbers(
        cls,
        features: Sequence[str],
        log_columns: Iterable[str] = (),
        periodic_columns: Iterable[tuple[str, float]] = (),
        *,
        label: str | None = None,
        time: str | None = None,
    ) -> DatasetSchema:
        """A table of numbers read as `AutoencoderDetector(log_columns=..., periodic_columns=...)`
        reads it: `features` in order, `log1p` of `log_columns`, sin/cos of the phase of each
        (column, period) of `periodic_columns`; a missing value is an error. `label`: a 0/1
        column; `time`: the feature that holds seconds, for time splits and alerts per day
        (read as a plain number unless it is one of `periodic_columns`)."""
        log, periodic = set(log_columns), {c: [float(p)] for c, p in periodic_columns}
        cols = [ColumnSpec(name=f, role="time" if f == time else "feature", log=f in log,
                           periods=periodic.get(f, [] if f == time else None)) for f in features]
        if label is not None:
            cols.append(ColumnSpec(name=label, role="label", type="integer"))
        return cls(columns=cols, missing="error")


Schema = DatasetSchema  # the name of the credit-card schema's former class, for older imports


def _to_datetime(s: pd.Series, **kwargs) -> pd.Series | None:
    """pandas' parse with unreadable values as NaT; None when pandas refuses the column as a
    whole (time zones that differ from row to row)."""
    try:
        return pd.to_datetime(s, errors="coerce", **kwargs)
    except (TypeError, ValueError):
        return None


def _wall_clock(value):
    """One date/time as its own wall-clock time, time zone dropped (NaT when unreadable)."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return pd.NaT
    return ts.tz_localize(None) if ts is not pd.NaT and ts.tzinfo is not None else ts


def as_seconds(s: pd.Series, name: str = "time", source: str = "input") -> np.ndarray:
    """Seconds as float64: numbers pass through; datetimes (or datetime strings) become seconds
    since 1970 of their wall-clock time, so hour of day is the local hour the row was stamped."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype="float64", na_value=np.nan)
    if not pd.api.types.is_datetime64_any_dtype(s):
        parsed = _to_datetime(s)
        if parsed is None or parsed.isna().sum() > s.isna().sum():
            parsed = _to_datetime(s, format="mixed")
        if parsed is None or parsed.isna().sum() > s.isna().sum():  # time zones differ by row
            parsed = pd.to_datetime(s.map(_wall_clock), errors="coerce")
        bad = (parsed.isna() & s.notna()).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{source}: column {name!r}, row {i + 1}: value {_shown(s.iloc[i])!r} "
                            f"is not a date/time ({int(bad.sum())} such value(s))")
        s = parsed
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    seconds = s.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64") / 1e9
    seconds[s.isna().to_numpy()] = np.nan
    return seconds


def check_table(
    df: pd.DataFrame,
    schema: DatasetSchema,
    *,
    source: str = "input",
    require_label: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """Check a table against `schema`: every feature column (and the label, when required) is
    present; a label holds only 0/1. Returns the frame (label as int8) and the columns the
    schema does not know, which callers ignore with a warning. Values of feature columns are
    checked when they are transformed (`Preprocessor`), naming column, row and value."""
    if len(df.columns) == 0 or len(df) == 0:
        raise DataError(f"{source}: the file has no data rows")
    df = df.rename(columns=str)
    needed = schema.features + ([schema.label] if require_label and schema.label else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {_quote(missing)}; the schema needs "
                        f"{len(needed)} columns {_quote(needed)}")
    unknown = [c for c in df.columns if c not in schema.names]
    for c in schema.feature_columns:
        _check_values(df[c.name], c, source, allow_missing=schema.missing == "impute")
    if schema.label and schema.label in df.columns:
        df = df.copy()
        df[schema.label] = _label_column(df[schema.label], schema.label, source)
    return df, unknown


def _check_values(s: pd.Series, spec: ColumnSpec, source: str, allow_missing: bool) -> None:
    """Numbers are numbers, dates are dates; a missing value only where the schema allows it."""
    if spec.type == "categorical":
        return
    if spec.type == "datetime":
        as_seconds(s, spec.name, source)
        return
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        inf = np.isinf(v)
        if inf.any():
            i = _first_bad(inf)
            raise DataError(f"{source}: column {spec.name!r}, row {i + 1}: value {_shown(s.iloc[i])!r} "
                            "is not finite")
        if not allow_missing and np.isnan(v).any():
            _numeric_column(s, spec.name, source)  # names the first empty value
        return
    if pd.api.types.is_bool_dtype(s) and (allow_missing or s.notna().all()):
        return
    if not allow_missing:
        _numeric_column(s, spec.name, source)  # names the first bad value
        return
    values = pd.to_numeric(s, errors="coerce")
    bad = (values.isna() & s.notna()).to_numpy() | np.isinf(values.to_numpy(dtype="float64", na_value=0.0))
    if bad.any():
        _numeric_column(s.where(s.notna(), 0), spec.name, source)


def feature_table(X, names: list[str]) -> pd.DataFrame:
    """The feature columns `names` of a table (DataFrame, or a 2-D array in that order), as
    given: text, datetimes and missing values are read later by the preprocessor, by type."""
    if not isinstance(X, pd.DataFrame):
        arr = np.asarray(X, dtype=object)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise DataError(f"X has shape {arr.shape}; the schema has {len(names)} feature "
                            f"columns {list(names)}")
        X = pd.DataFrame(arr, columns=list(names))
    missing = [c for c in names if c not in X.columns]
    if missing:
        raise DataError(f"X is missing column(s) {missing}; the model reads {len(names)} "
                        f"columns {list(names)}")
    if len(X) == 0:
        raise DataError("X has no rows")
    return X[list(names)]


def as_dataset_schema(schema: DatasetSchema | dict) -> DatasetSchema:
    """A schema given as a DatasetSchema or as its dict (a schema file's contents)."""
    return DatasetSchema.model_validate(schema)


def has_labels(df: pd.DataFrame, schema: DatasetSchema) -> bool:
    label = as_dataset_schema(schema).label
    return label is not None and label in df.columns
