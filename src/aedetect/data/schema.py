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

from aedetect.data.values import (
    MAX_ABS_VALUE,
    out_of_range_reason,
    raise_first,
    read_booleans,
    read_datetimes,
    read_numbers,
    shown,
)
from aedetect.errors import DataError

__all__ = ["MAX_ABS_VALUE", "out_of_range_reason"]  # the bound's home is data/values.py

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


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _numeric_column(s: pd.Series, col: str, source: str) -> pd.Series:
    values, problems = read_numbers(s)
    raise_first(problems, col, source)
    empty = np.isnan(values)
    if empty.any():
        i = _first_bad(empty)
        raise DataError(
            f"{source}: column {col!r}, row {i + 1}: empty value "
            f"({int(empty.sum())} empty value(s) in this column); every feature must be a number"
        )
    return pd.Series(values, index=s.index)


def _label_column(s: pd.Series, col: str, source: str) -> pd.Series:
    values = pd.to_numeric(s, errors="coerce")
    ok = values.isin([0, 1]).to_numpy()
    if not ok.all():
        i = _first_bad(~ok)
        raise DataError(
            f"{source}: column {col!r}, row {i + 1}: label must be 0 (normal) or 1 (anomaly), "
            f"got {shown(s.iloc[i])!r} ({int((~ok).sum())} such row(s))"
        )
    return values.astype("int8")


def column_problems(raw: pd.Series, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised check of one numeric feature column, for callers that skip bad rows instead of
    stopping: float64 values (NaN where bad or empty) and a per-row reason (None where good; an
    empty value is a reason here, callers clear it where the model imputes gaps)."""
    values, problems = read_numbers(raw)
    reasons = np.full(len(values), None, dtype=object)
    bad = problems != None  # noqa: E711 (element-wise on object arrays)
    reasons[bad] = [f"column {col!r}: {p}" for p in problems[bad]]
    empty = np.isnan(values) & ~bad
    reasons[empty] = f"column {col!r}: empty value"
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
    # (None) is a day; [] reads it as a plain number. A datetime column's: None is a day and a week.
    periods: list[float] | None = None
    # A datetime column's text format (strptime codes, e.g. "%d/%m/%Y %H:%M"), inferred from the
    # training data so every reader takes a date the same way; None: ISO 8601, else value by value.
    format: str | None = None
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


class HistorySpec(BaseModel):
    """Entity history features (`aedetect.data.history`): per entity column (a card, a terminal)
    and window, what the entity did before each row. Needs the schema's time column."""

    model_config = ConfigDict(extra="forbid")

    entities: list[str] = Field(min_length=1)
    amount: str | None = None  # the amount column compared with each entity's usual
    windows: list[float] = Field(default_factory=lambda: [3_600.0, 86_400.0, 604_800.0, 2_592_000.0],
                                 min_length=1)
    # The hour of day against each entity's usual hours (`<entity>.hour_unusual_<longest>`).
    # `--entity-columns` sets it; False when absent, so the model folders saved before it keep
    # their features.
    hours: bool = False
    # Label-based risk (the label-aware mode; `train --use-labels` sets it): per entity, the share
    # of fraud among its labelled payments in each of `label_windows` ending `label_delay` seconds
    # before the row, since labels arrive late (`<entity>.fraud_rate_<w>`, `<entity>.frauds_<w>`).
    # Needs the schema's label column; None: no such features.
    label_delay: float | None = None
    label_windows: list[float] = Field(default_factory=lambda: [86_400.0, 604_800.0, 2_592_000.0],
                                       min_length=1)

    @model_validator(mode="after")
    def _windows(self) -> HistorySpec:
        if any(not (w > 0 and w < 1e9) for w in [*self.windows, *self.label_windows]):
            raise ValueError(f"history windows must be seconds > 0; got {self.windows}, label windows "
                             f"{self.label_windows}")
        if self.label_delay is not None and not 0 < self.label_delay < 1e9:
            raise ValueError(f"history label_delay must be seconds > 0; got {self.label_delay}")
        if len(set(self.entities)) != len(self.entities):
            raise ValueError(f"history entities repeat a column: {self.entities}")
        return self

    @property
    def feature_names(self) -> list[str]:
        from aedetect.data.history import feature_names

        return feature_names(self.entities, sorted(self.windows), **self.options)

    @property
    def label_feature_names(self) -> list[str]:
        """The label-based risk columns among `feature_names` (none without `label_delay`)."""
        from aedetect.data.history import is_label_feature

        return [n for n in self.feature_names if is_label_feature(n)]

    @property
    def options(self) -> dict:
        """The keyword arguments of `aedetect.data.history.compute` beyond the windows."""
        risk = self.label_delay is not None
        return {"hours": self.hours, "label_delay": self.label_delay,
                "label_windows": sorted(self.label_windows) if risk else ()}

    @property
    def reach(self) -> float:
        """How far back a row's features look (seconds; `aedetect.data.history.reach`)."""
        from aedetect.data.history import reach

        return reach(self.windows, self.label_delay, self.label_windows)


class DatasetSchema(BaseModel):
    """The columns of a table and what each is for. The order of feature columns is kept."""

    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSpec]
    time_feature: bool = True  # the time column is also a feature (hour of day, day of week)
    missing: Literal["impute", "error"] = "impute"  # missing feature values: median + indicator
    max_categories: int = Field(20, ge=1)  # one-hot up to this many categories, frequency above
    history: HistorySpec | None = None  # entity history features, computed before the model

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
            if c.format is not None and c.type != "datetime":
                raise ValueError(f"column {c.name!r}: format applies to datetime columns, not {c.type}")
            if c.log and c.type not in ("numeric", "integer"):
                raise ValueError(f"column {c.name!r}: log applies to numeric columns, not {c.type}")
        if not self.features:
            raise ValueError("the schema has no feature column")
        if self.history is not None:
            h = self.history
            unknown = [c for c in [*h.entities, h.amount] if c is not None and c not in names]
            if unknown:
                raise ValueError(f"history names column(s) {_quote(unknown)}, not in the schema")
            if self.time is None:
                raise ValueError("history features need a time column (role: time)")
            if h.label_delay is not None and self.label is None:
                raise ValueError("history label_delay (label-based risk) needs a label column (role: label)")
            if h.amount is not None and self.column(h.amount).type not in ("numeric", "integer"):
                raise ValueError(f"history amount column {h.amount!r} must hold numbers")
            clash = [c for c in h.feature_names if c in names]
            if clash:
                raise ValueError(f"column(s) {_quote(clash)} have the names of history features")
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
        """The columns the autoencoder reads: the table's, then the history features."""
        return [c.name for c in self.feature_columns] + self.history_features

    @property
    def history_features(self) -> list[str]:
        """The history columns the autoencoder reads (`aedetect.data.history`), computed from
        the table, not read: every computed one but the label-based risk."""
        risk = set(self.label_features)
        return [n for n in self.computed_features if n not in risk]

    @property
    def label_features(self) -> list[str]:
        """The label-based risk columns (`HistorySpec.label_delay`): computed like the history
        features, read by the label-aware head only (an autoencoder trained on normals would
        take every payment at a terminal with a past fraud for an anomaly)."""
        return self.history.label_feature_names if self.history is not None else []

    @property
    def computed_features(self) -> list[str]:
        """Every column `aedetect.data.history.compute` adds, in its order."""
        return self.history.feature_names if self.history is not None else []

    @property
    def input_features(self) -> list[str]:
        """The feature columns a table must hold (every feature but the history ones)."""
        return [c.name for c in self.feature_columns]

    def time_seconds(self, df: pd.DataFrame) -> np.ndarray | None:
        """The time column as float seconds (datetimes: seconds since 1970, wall-clock time)."""
        if self.time is None:
            return None
        spec = self.column(self.time)
        return as_seconds(df[self.time], self.time, fmt=spec.format if spec.type == "datetime" else None)

    # -- overrides ------------------------------------------------------------------------------
    def with_overrides(
        self,
        *,
        label_column: str | None = None,
        time_column: str | None = None,
        id_columns: Sequence[str] = (),
        exclude_columns: Sequence[str] = (),
        categorical_columns: Sequence[str] = (),
        entity_columns: Sequence[str] = (),
    ) -> DatasetSchema:
        """A copy with the user's choices applied; a name that is not a column is an error.
        `entity_columns`: ids that get history features (`HistorySpec`), the amount being the
        first numeric feature named like an amount."""
        given = [label_column, time_column, *id_columns, *exclude_columns, *categorical_columns,
                 *entity_columns]
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
            if c.name in entity_columns:
                c.role, c.log, c.note = "id", False, "entity: history features"
        history = self.history
        if entity_columns:
            amount = next((c.name for c in cols if c.role == "feature" and c.type in ("numeric", "integer")
                           and "amount" in c.name.lower()), None)
            history = HistorySpec(entities=list(entity_columns), amount=amount, hours=True)
        try:
            return DatasetSchema(columns=cols, time_feature=self.time_feature, missing=self.missing,
                                 max_categories=self.max_categories, history=history)
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


def as_seconds(s: pd.Series, name: str = "time", source: str = "input", fmt: str | None = None
               ) -> np.ndarray:
    """Seconds since 1970 (float64, NaN where missing) of a time column, by the one reading of
    `aedetect.data.values.read_datetimes`: numbers are seconds; datetimes their wall-clock
    time; text in `fmt` (else ISO 8601, else one value at a time). A value that is not a
    date/time stops here, naming source, column, row and value."""
    values, problems = read_datetimes(s, fmt)
    raise_first(problems, name, source)
    return values


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
    needed = schema.input_features + ([schema.label] if require_label and schema.label else [])
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
    """Each value read by its column's type (`aedetect.data.values`); a missing value only where
    the schema allows it."""
    if spec.type == "categorical":
        return
    if spec.type == "datetime":
        values, problems = read_datetimes(s, spec.format)
    elif spec.type == "boolean":
        values, problems = read_booleans(s)
    else:
        values, problems = read_numbers(s)
    raise_first(problems, spec.name, source)
    empty = np.isnan(values)
    if not allow_missing and empty.any():
        i = _first_bad(empty)
        raise DataError(f"{source}: column {spec.name!r}, row {i + 1}: empty value "
                        f"({int(empty.sum())} empty value(s) in this column); every feature must be "
                        "a number")


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
