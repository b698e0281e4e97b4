"""Preprocessing fitted on training normals, stored as plain numbers in the model's manifest.

Each feature column becomes one block of output features, by its type (see `DatasetSchema`):
  numeric/integer  the value (log1p of heavy-tailed non-negative columns, decided at inference);
                   a missing value is imputed with the training median and, when the training
                   rows had missing values, flagged in a `col:missing` feature
  boolean          0/1, missing as for numbers
  time (seconds)   sin/cos of the phase of each period (a day: `Time:sin`, `Time:cos`)
  datetime         sin/cos of the hour of day and of the day of week (the column's `periods`:
                   the hour of day only when the training data spans less than two weeks)
  categorical      one-hot (`col=value`) up to `max_categories` categories; above it, the
                   category's share of the training rows (`col:frequency`). Categories on
                   fewer than 0.5% of the training rows share one `col=(rare)` feature (a
                   one-hot feature that is almost always 0 would make every rare value look
                   as strange as an unseen one). Either way a
                   `col=(unseen)` feature is 1 for a category never seen in training, so such a
                   row is scored (not rejected) and its explanation names the category
Then every output feature is standardised, except 0/1 indicators, which are only centred.
Numbers beyond what the float32 network can score are refused with their reason (`limits`).
`sources` maps each output feature to its column, so
contributions sum back to the user's columns (`column_contributions`, `reasons`).

The same arithmetic exists in NumPy (`transform`) and in TensorFlow ops (`transform_tf`, for
tf.data pipelines and the SavedModel export); tests keep them equal. `transform` takes a 2-D
array of the input columns in order (numbers only) or a table (DataFrame / mapping of columns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from aedetect.data.schema import DAY, WEEK, DatasetSchema
from aedetect.data.values import (
    MAX_ABS_VALUE,
    category_text,
    raise_first,
    read_booleans,
    read_datetimes,
    read_numbers,
)
from aedetect.errors import DataError
from aedetect.store.layout import MISSING, block_names, numeric_blocks, output_names

MIN_SHARE = 0.005  # a category on fewer training rows shares the `(rare)` one-hot feature
MAX_FREQUENCIES = 100_000  # categories kept by a frequency encoding; rarer ones count as unseen


class Preprocessor:
    """Per-column transforms and a standardisation, fitted on normal rows.

    `Preprocessor.from_schema(schema)` reads a `DatasetSchema`, every column type;
    `Preprocessor(feature_names, log_columns, periodic_columns)` is the numbers-only form
    (`AutoencoderDetector`'s `log_columns` and `periodic_columns`), the same as
    `from_schema(DatasetSchema.of_numbers(feature_names, log_columns, periodic_columns))`.
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        log_columns: Iterable[str] = (),
        periodic_columns: Iterable[tuple[str, float]] = (),
        *,
        blocks: list[dict] | None = None,
        missing: str = "error",
        max_categories: int = 20,
    ):
        self.feature_names = [str(c) for c in feature_names]
        self.blocks = blocks if blocks is not None else numeric_blocks(
            self.feature_names, log_columns, periodic_columns)
        self.missing = missing
        self.max_categories = int(max_categories)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self._count = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None

    @classmethod
    def from_schema(cls, schema: DatasetSchema) -> Preprocessor:
        blocks = []
        for c in schema.feature_columns:
            if c.type == "categorical":
                blocks.append({"column": c.name, "kind": "categorical"})
            elif c.type == "datetime":
                # The schema's periods (inference: the week only from two weeks of data);
                # [DAY, WEEK] for a schema that names none (those stored before periods existed).
                blocks.append({"column": c.name, "kind": "periodic", "periods": c.periods or [DAY, WEEK],
                               "datetime": True, **({"format": c.format} if c.format else {})})
            elif c.clock_periods:
                blocks.append({"column": c.name, "kind": "periodic", "periods": c.clock_periods,
                               "datetime": False})
            elif c.type == "boolean":
                blocks.append({"column": c.name, "kind": "numeric", "log": False, "boolean": True})
            else:
                blocks.append({"column": c.name, "kind": "numeric", "log": bool(c.log)})
        from aedetect.data.history import is_log_feature

        blocks += [{"column": name, "kind": "numeric", "log": is_log_feature(name), "history": True}
                   for name in schema.history_features]
        return cls(schema.features, blocks=blocks, missing=schema.missing,
                   max_categories=schema.max_categories)

    # -- layout -----------------------------------------------------------------------------
    @property
    def log_columns(self) -> list[str]:
        return [b["column"] for b in self.blocks if b["kind"] == "numeric" and b.get("log")]

    @property
    def periodic_columns(self) -> list[tuple[str, float]]:
        return [(b["column"], b["periods"][0]) for b in self.blocks
                if b["kind"] == "periodic" and len(b["periods"]) == 1 and not b["datetime"]]

    @property
    def categorical_columns(self) -> list[str]:
        return [b["column"] for b in self.blocks if b["kind"] in ("onehot", "frequency", "categorical")]

    @property
    def numbers_only(self) -> bool:
        """True when every input is a number, so a 2-D float array can be transformed."""
        return all(b["kind"] in ("numeric", "periodic") and not b.get("datetime")
                   for b in self.blocks)

    @property
    def input_kinds(self) -> list[str]:
        """How each input column is read once fitted: "category", "datetime", "boolean" or
        "number"."""
        return ["category" if b["kind"] in ("onehot", "frequency") else
                "datetime" if b.get("datetime") else "boolean" if b.get("boolean") else "number"
                for b in self.blocks]

    @property
    def n_features_in(self) -> int:
        return len(self.feature_names)

    @property
    def output_names(self) -> list[str]:
        return output_names(self.blocks)

    @property
    def binary_outputs(self) -> np.ndarray:
        """Which output features are 0/1 indicators (one-hot, rare, unseen, missing)."""
        flags = []
        for b in self.blocks:
            k = len(block_names(b))
            if b["kind"] == "onehot":
                flags += [True] * k
            elif b["kind"] == "frequency":
                flags += [False, True]
            else:
                flags += [False] * (k - 1) + [bool(b.get("indicator"))]
        return np.array(flags, dtype=bool)

    @property
    def nullable_columns(self) -> list[str]:
        """Columns that may be missing: categories, and numbers that were missing in training."""
        return [b["column"] for b in self.blocks
                if b["kind"] in ("onehot", "frequency") or b.get("indicator")]

    @property
    def sources(self) -> list[str]:
        """The input column of each output feature."""
        return [b["column"] for b in self.blocks for _ in block_names(b)]

    @property
    def n_features_out(self) -> int:
        return len(self.output_names)

    # -- fitting ----------------------------------------------------------------------------
    def _fit_blocks(self, X) -> None:
        """Medians, categories and frequencies from the training rows (once, first chunk)."""
        cols = self._columns(X)
        for j, b in enumerate(self.blocks):
            if b["kind"] == "categorical":
                counts = _categories(cols[b["column"]]).value_counts()
                if len(counts) <= self.max_categories:
                    common = counts >= MIN_SHARE * counts.sum()
                    b.update(kind="onehot", categories=[str(v) for v in counts.index[common]],
                             rare=[str(v) for v in counts.index[~common]])
                else:
                    share = counts.head(MAX_FREQUENCIES) / counts.sum()
                    b.update(kind="frequency", frequencies={str(k): float(v) for k, v in share.items()})
            elif b["kind"] in ("numeric", "periodic") and "median" not in b:
                v = self._numbers(j, cols[b["column"]], allow_missing=True)
                finite = v[~np.isnan(v)]
                b["median"] = float(np.median(finite)) if len(finite) else 0.0
                b["indicator"] = bool(np.isnan(v).any())
                if b["indicator"] and self.missing == "error":
                    self._numbers(j, cols[b["column"]])  # raises, naming the row

    def partial_fit(self, X) -> Preprocessor:
        """Accumulate mean/variance over chunks, so a file larger than memory can be fitted.

        Medians and categories come from the first chunk."""
        if self._count == 0:
            self._fit_blocks(X)
        e = self._expand(X, dtype="float64", fitted=False)
        if self._sum is None:
            self._sum = np.zeros(e.shape[1])
            self._sumsq = np.zeros(e.shape[1])
        # Shift by the first chunk's mean so the sum of squares keeps its precision.
        if self._count == 0:
            self._shift = e.mean(axis=0)
        d = e - self._shift
        self._sum += d.sum(axis=0)
        self._sumsq += (d * d).sum(axis=0)
        self._count += len(e)
        mean_d = self._sum / self._count
        var = np.maximum(self._sumsq / self._count - mean_d**2, 0.0)
        self.mean_ = (mean_d + self._shift).astype("float32")
        std = np.sqrt(var)
        # Indicators are centred, not scaled: scaled by its standard deviation, the one-hot
        # feature of a 1% category would reach 10 on its rows and swamp the numbers.
        self.scale_ = np.where((std > 1e-12) & ~self.binary_outputs, std, 1.0).astype("float32")
        return self

    def fit(self, X) -> Preprocessor:
        self._count, self._sum, self._sumsq = 0, None, None
        for b in self.blocks:
            if b["kind"] in ("onehot", "frequency"):
                b["kind"] = "categorical"
            b.pop("median", None)
        return self.partial_fit(X)

    # -- reading the input ------------------------------------------------------------------
    def _columns(self, X) -> Mapping:
        """The input as a mapping of column name to values; a missing column is an error."""
        if not isinstance(X, (pd.DataFrame, Mapping)):
            x = np.asarray(X)
            if x.ndim != 2 or x.shape[1] != self.n_features_in:
                raise DataError(f"expected {self.n_features_in} feature columns {self.feature_names}; "
                                f"got an array of shape {x.shape}")
            return {c: x[:, j] for j, c in enumerate(self.feature_names)}
        names = list(X.columns) if isinstance(X, pd.DataFrame) else list(X.keys())
        missing = [c for c in self.feature_names if c not in names]
        if missing:
            raise DataError(f"missing column(s) {', '.join(repr(c) for c in missing)}; the model "
                            f"reads {len(self.feature_names)} columns {self.feature_names}")
        return X

    def read_input(self, j: int, values) -> tuple[np.ndarray, np.ndarray]:
        """Input column `j` (a number, boolean or time column) as float64 and a per-row problem
        (None = good), by the one reading of its type (`aedetect.data.values`). Missing values
        are NaN with no problem; whether the model reads a gap is `nullable_columns`."""
        b = self.blocks[j]
        if b.get("datetime"):
            return read_datetimes(values, b.get("format"))
        if b.get("boolean"):
            return read_booleans(values)
        return read_numbers(values)

    def canonical(self, X, frame: bool = True):
        """The input columns as the model reads them, without stopping at a bad value: numbers,
        booleans (0/1) and times (seconds since 1970) as float64 (NaN where missing or refused),
        categories as their text (None where missing). Monitoring profiles and compares these,
        so drift statistics see the values the model scores. `frame` False: a dict of arrays (no
        DataFrame to build, for the service's few rows)."""
        cols = self._columns(X)
        out = {}
        for j, b in enumerate(self.blocks):
            raw = cols[b["column"]]
            if b["kind"] in ("onehot", "frequency", "categorical"):
                out[b["column"]] = category_text(raw)
            else:
                out[b["column"]] = self.read_input(j, raw)[0]
        return pd.DataFrame(out) if frame else out

    def _numbers(self, j: int, values, allow_missing: bool = False) -> np.ndarray:
        """Input column `j` (a numeric or time column) as float64; NaN where missing (an error
        when not allowed)."""
        b = self.blocks[j]
        c = b["column"]
        if isinstance(values, (np.ndarray, pd.Series)) and values.dtype.kind == "f" \
                and not b.get("datetime") and not b.get("boolean"):
            v = np.asarray(values, dtype="float64")  # a matrix column or read numbers: no text to read
        else:
            v, problems = self.read_input(j, values)
            raise_first(problems, c, None)
        inf = np.isinf(v)
        if inf.any():
            i = int(np.flatnonzero(inf)[0])
            raise DataError(f"column {c!r}, row {i + 1}: value {v[i]!r} is not finite")
        if not allow_missing:
            nan = np.isnan(v)
            if nan.any() and (self.missing == "error" or "median" not in b):
                i = int(np.flatnonzero(nan)[0])
                raise DataError(f"column {c!r}, row {i + 1}: empty value ({int(nan.sum())} empty "
                                "value(s) in this column); every feature must be a number")
        return v

    # -- transforming -----------------------------------------------------------------------
    def _expand(self, X, dtype: str = "float32", fitted: bool = True) -> np.ndarray:
        """The output features before standardising, block by block (no per-row Python).

        Numbers outside `limits` are refused with their row and reason (`fitted=False` while
        fitting: only the absolute bound applies)."""
        cols = self._columns(X)
        n = len(next(iter(cols.values()))) if isinstance(cols, dict) else len(cols)
        out = np.empty((n, self.n_features_out), dtype=dtype)
        lo, hi = self.limits(fitted)
        j = 0
        for i_in, b in enumerate(self.blocks):
            raw = cols[b["column"]]
            k = len(block_names(b))
            if b["kind"] in ("numeric", "periodic"):
                if b["kind"] == "numeric" and not b.get("log") and not b.get("indicator") and \
                        not b.get("boolean") and isinstance(raw, np.ndarray) and raw.dtype.kind in "fiu":
                    with np.errstate(invalid="ignore"):
                        ok = (raw >= lo[i_in]) & (raw <= hi[i_in])  # False for NaN too
                    if not ok.all():
                        self._refuse(b, i_in, raw, ok)
                    out[:, j] = raw  # the common case: one cast, no copies
                    j += k
                    continue
                v = self._numbers(i_in, raw)
                if not b.get("datetime"):
                    with np.errstate(invalid="ignore"):
                        ok = np.isnan(v) | ((v >= lo[i_in]) & (v <= hi[i_in]))
                    if not ok.all():
                        self._refuse(b, i_in, v, ok)
                nan = np.isnan(v)
                if b.get("indicator"):
                    v = np.where(nan, b["median"], v)
                    out[:, j + k - 1] = nan
                elif nan.any():  # never missing in training: the model cannot read a gap here
                    i = int(np.flatnonzero(nan)[0])
                    raise DataError(f"column {b['column']!r}, row {i + 1}: empty value "
                                    f"({int(nan.sum())} in this column); the training rows had "
                                    "no missing values in this column")
                if b["kind"] == "numeric":  # a log column's values are >= 0 (`limits`)
                    out[:, j] = np.log1p(v) if b.get("log") else v
                else:
                    for i, p in enumerate(b["periods"]):
                        phase = (2 * np.pi / p) * v
                        out[:, j + 2 * i], out[:, j + 2 * i + 1] = np.sin(phase), np.cos(phase)
            else:
                cats = _categories(raw)
                if b["kind"] == "onehot":
                    levels = b["categories"] + b.get("rare", [])
                    codes = pd.Categorical(cats, categories=levels).codes
                    codes = np.where(codes < 0, k - 1, np.minimum(codes, len(b["categories"])))
                    block = np.zeros((n, k), dtype=dtype)
                    block[np.arange(n), codes] = 1.0
                    out[:, j:j + k] = block
                else:
                    freq = cats.map(b["frequencies"]).to_numpy(dtype="float64", na_value=np.nan)
                    unseen = np.isnan(freq)
                    out[:, j], out[:, j + 1] = np.where(unseen, 0.0, freq), unseen
            j += k
        return out

    def _refuse(self, b: dict, j: int, values, ok: np.ndarray):
        """Raise for the first value of column `j` outside `limits`, naming its row."""
        r = int(np.flatnonzero(~ok)[0])
        v = float(values[r])
        if np.isnan(v):
            self._numbers(j, values)  # an empty value: says whether the model reads gaps here
        raise DataError(f"column {b['column']!r}, row {r + 1}: {self.value_problem(j, v)}")

    def _layout(self) -> tuple[list[int], list[int]]:
        """Input and output positions of the numbers that pass through unchanged (no log, no
        period): only these are standardised straight from the raw value."""
        plain_in, plain_out, j_out = [], [], 0
        for j, b in enumerate(self.blocks):
            if b["kind"] == "numeric" and not b.get("log"):
                plain_in.append(j)
                plain_out.append(j_out)
            j_out += len(block_names(b))  # called once fitted: every block has its names
        return plain_in, plain_out

    def limits(self, fitted: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest raw value accepted per input column.

        Every number must be finite with magnitude at most `MAX_ABS_VALUE`, and at least 0 in a
        log-transformed column (log1p is read only from 0 up); once fitted, a
        pass-through column must also stay within `MAX_ABS_VALUE` standard deviations of its
        training mean (a near-constant training column has a tiny scale). Inside these bounds the
        float32 network cannot overflow, so a huge value scores high (and is flagged) instead of
        scoring NaN; outside them the value is refused with its reason. Categories have no bound
        (their entries are the absolute bound, unused).
        """
        lo = np.full(self.n_features_in, -MAX_ABS_VALUE)
        hi = np.full(self.n_features_in, MAX_ABS_VALUE)
        for j, b in enumerate(self.blocks):
            if b["kind"] == "numeric" and b.get("log"):
                lo[j] = 0.0  # log1p of a negative value is not the value: refused, never clamped
        if fitted and self.mean_ is not None:
            plain_in, plain_out = self._layout()
            mean = self.mean_[plain_out].astype("float64")
            scale = self.scale_[plain_out].astype("float64")
            lo[plain_in] = np.maximum(lo[plain_in], mean - MAX_ABS_VALUE * scale)
            hi[plain_in] = np.minimum(hi[plain_in], mean + MAX_ABS_VALUE * scale)
        return lo, hi

    def value_problem(self, j: int, value) -> str:
        """Why input column `j` refuses `value` (see `limits`)."""
        from aedetect.data.values import out_of_range_reason

        value = float(value)
        if not np.isfinite(value):
            return f"value {value!r} is not finite"
        if abs(value) > MAX_ABS_VALUE:
            return out_of_range_reason(value)
        b = self.blocks[j]
        if b["kind"] == "numeric" and b.get("log") and value < 0:
            return (f"value {value!r} is below 0; this column is read through log1p, which the "
                    "model learned from values of 0 and above")
        return (f"value {value!r} is more than {MAX_ABS_VALUE:g} standard deviations from the "
                "training mean, beyond what the model can score")

    def problems(self, x: np.ndarray) -> np.ndarray:
        """Per-row reason (None = the row is in range) of a numbers-only matrix, for callers
        that skip bad rows."""
        x = np.asarray(x, dtype="float64")
        lo, hi = self.limits()
        with np.errstate(invalid="ignore"):
            bad = ~((x >= lo) & (x <= hi))
        nullable = [j for j, b in enumerate(self.blocks) if b.get("indicator")]
        if nullable:  # a gap where the model reads gaps is not a problem
            bad[:, nullable] &= ~np.isnan(x[:, nullable])
        reasons = np.full(len(x), None, dtype=object)
        for r in np.flatnonzero(bad.any(axis=1)):
            c = int(np.flatnonzero(bad[r])[0])
            reasons[r] = f"column {self.feature_names[c]!r}: {self.value_problem(c, x[r, c])}"
        return reasons

    def _require_fitted(self) -> None:
        if self.mean_ is None:
            raise RuntimeError("this Preprocessor is not fitted yet; call fit() first")

    def transform(self, X) -> np.ndarray:
        """Preprocessed float32 rows (see the module docstring)."""
        self._require_fitted()
        out = self._expand(X)
        out -= self.mean_
        out /= self.scale_
        return out

    def transform_tf(self, x):
        """The same transform in TensorFlow ops, for tf.data pipelines and exported graphs.

        `x`: a float matrix of the input columns in order (numbers-only layouts), or a mapping
        of column name to a 1-D tensor: float for numbers, float64 seconds since 1970 for
        datetimes, strings for categories ("" = missing).
        """
        import tensorflow as tf

        self._require_fitted()
        if not isinstance(x, Mapping):
            x = tf.cast(x, tf.float64)
            x = {c: x[:, j] for j, c in enumerate(self.feature_names)}
        cols = []
        for b in self.blocks:
            v = x[b["column"]]
            if b["kind"] in ("numeric", "periodic"):
                v = tf.cast(v, tf.float64)  # log1p and phases in float64, as in NumPy
                nan = tf.math.is_nan(v)
                v = tf.where(nan, tf.constant(b.get("median", 0.0), tf.float64), v)
                if b["kind"] == "numeric":  # a negative value in a log column scores NaN, never clamped
                    if b.get("log"):
                        v = tf.where(v < 0, tf.constant(np.nan, tf.float64), tf.math.log1p(v))
                    cols.append(tf.cast(v, tf.float32))
                else:
                    for p in b["periods"]:
                        phase = (2 * np.pi / p) * v
                        cols += [tf.cast(tf.sin(phase), tf.float32), tf.cast(tf.cos(phase), tf.float32)]
                if b.get("indicator"):
                    cols.append(tf.cast(nan, tf.float32))
                continue
            v = tf.where(tf.equal(v, ""), MISSING, v)
            if b["kind"] == "onehot":
                hit = tf.cast(tf.equal(v[:, None], tf.constant(b["categories"] + b.get("rare", []))),
                              tf.float32)
                own, rare = hit[:, :len(b["categories"])], hit[:, len(b["categories"]):]
                cols += tf.unstack(own, axis=1)
                if b.get("rare"):
                    cols.append(tf.reduce_max(rare, axis=1))
                cols.append(1.0 - tf.reduce_max(hit, axis=1))
            else:
                table = self._tf_table(b)
                freq = table.lookup(v)
                cols += [tf.maximum(freq, 0.0), tf.cast(freq < 0, tf.float32)]
        # divide_no_nan, not `/`: in a graph (tf.data, the SavedModel) Grappler turns a division
        # by a constant into a product with its reciprocal, one float32 ulp off NumPy's quotient
        # in most entries, which a well-reconstructed row's residual amplifies to 1e-4 relative
        # in its score. The scale is never 0, so the quotient is IEEE's, as in NumPy.
        return tf.math.divide_no_nan(tf.stack(cols, axis=1) - tf.constant(self.mean_), tf.constant(self.scale_))

    def _tf_table(self, b: dict):
        """A lookup table for a frequency block, made once (an export tracks `tf_tables`)."""
        import tensorflow as tf

        tables = self.__dict__.setdefault("_tables", {})
        if b["column"] not in tables:
            keys, values = zip(*b["frequencies"].items(), strict=True)
            init = tf.lookup.KeyValueTensorInitializer(list(keys), np.asarray(values, "float32"))
            tables[b["column"]] = tf.lookup.StaticHashTable(init, default_value=-1.0)
        return tables[b["column"]]

    def tf_tables(self) -> list:
        return [self._tf_table(b) for b in self.blocks if b["kind"] == "frequency"]

    # -- explanations -----------------------------------------------------------------------
    def column_contributions(self, contributions: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Sum per-output-feature contributions back to the input columns (rows keep their sums)."""
        sources = self.sources
        names = list(dict.fromkeys(sources))
        if names == list(sources):  # one feature per column (numbers only): nothing to sum
            return names, contributions
        index = {c: i for i, c in enumerate(names)}
        if len(sources) - len(names) <= 64:  # a few columns with several features (times, a
            # small one-hot): each column's first feature, then the others added. A product with a
            # 0/1 matrix would wake BLAS's thread pool, which then spins on the cores the callers'
            # threads score with.
            first: dict[str, int] = {}
            for j, c in enumerate(sources):
                first.setdefault(c, j)
            out = contributions[:, list(first.values())]
            for j, c in enumerate(sources):
                if j != first[c]:
                    out[:, index[c]] += contributions[:, j]
            return names, out
        to_col = np.zeros((len(sources), len(names)), dtype=contributions.dtype)
        to_col[np.arange(len(sources)), [index[s] for s in sources]] = 1.0
        return names, contributions @ to_col

    def describe(self, X, columns: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """The reason of each `columns[i, k]` in the user's terms: the column and its value on
        row i, e.g. `merchant_category='jewelry' (unseen)`, `amount=1520.5`, `device=(missing)`.

        `columns` holds column names, or positions in `names` (faster on many rows)."""
        texts = self.reason_texts(X, columns, names)
        return texts.to_numpy(zero_copy_only=False).reshape(np.shape(columns), order="F")

    def reason_texts(self, X, columns: np.ndarray, names: Sequence[str] | None = None):
        """`describe`'s reasons as one Arrow string array, rank after rank (the n rows' first
        reasons, then their second...: `columns[i, r]`'s at r * n + i): built column by column
        in Arrow and NumPy, no Python string per row, so a file's millions of reasons cost a
        fraction of its scoring."""
        import pyarrow as pa

        cols = self._columns(X)
        columns = np.asarray(columns)
        if names is None:
            names, positions = np.unique(columns.astype(str), return_inverse=True)
            columns = positions.reshape(columns.shape)
        n = len(columns)
        flat = columns.ravel(order="F")
        if not len(flat):
            return pa.array([], pa.string())
        order = np.argsort(flat, kind="stable")  # the cells of each column together, in row order
        grouped = flat[order]
        bounds = np.r_[np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]), len(order)]
        by_name = {b["column"]: b for b in self.blocks}
        # Plain numbers (most reasons) of every column at once: one conversion to text and one
        # join with the column names, whatever the number of columns; the rest column by column.
        plain: list = []  # (cells, name, values)
        cells, parts = [], []
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            name, b = names[grouped[start]], by_name[names[grouped[start]]]
            raw = cols[name]
            raw = raw.to_numpy() if isinstance(raw, pd.Series) else np.asarray(raw)
            rows = order[start:end] % n
            if raw.dtype.kind in "iuf" and b["kind"] not in ("onehot", "frequency") \
                    and not b.get("datetime") and not b.get("history"):
                plain.append((order[start:end], name, raw[rows].astype("float64")))
            else:
                cells.append(order[start:end])
                parts.append(self._column_reasons(b, name, cols, rows))
        if plain:
            cells.insert(0, np.concatenate([c for c, _, _ in plain]))
            parts.insert(0, _number_reasons([nm for _, nm, _ in plain], [v for _, _, v in plain]))
        cells = np.concatenate(cells)
        inverse = np.empty_like(cells)
        inverse[cells] = np.arange(len(cells))
        return pa.concat_arrays(parts).take(pa.array(inverse))

    def _column_reasons(self, b: dict, name: str, cols, rows: np.ndarray):
        """The reasons naming column `name` on `rows`, as an Arrow string array."""
        import pyarrow as pa

        raw = cols[name]
        raw = raw.to_numpy() if isinstance(raw, pd.Series) else np.asarray(raw)
        if b["kind"] in ("onehot", "frequency"):
            cats = _categories(pd.Series(raw[rows])).to_numpy(dtype=str)
            seen = list(b["frequencies"] if b["kind"] == "frequency" else b["categories"] + b.get("rare", []))
            note = np.where(~np.isin(cats, seen), " (unseen)",
                            np.where(np.isin(cats, b.get("rare", [])), " (rare)", ""))
            text = np.strings.add(np.strings.add(np.strings.add(f"{name}='", cats), "'"), note)
            return pa.array(np.where(cats == MISSING, f"{name}=(missing)", text), pa.string())
        if b.get("datetime"):  # as the date the model read, however it came: text in the column's
            # format, seconds since 1970 or a timestamp (the batch scorer passes seconds, the
            # service the request's text): one display everywhere
            picked = pd.Series(raw[rows])
            seconds, _ = read_datetimes(picked, b.get("format"))
            missing = picked.isna().to_numpy() | np.isnan(seconds)
            shown = pa.array(_as_dates(np.where(np.isnan(seconds), 0.0, seconds)), pa.string())
            return _joined(f"{name}=", shown, missing, f"{name}=(missing)")
        v = raw[rows].astype("float64") if raw.dtype.kind in "iuf" else \
            pd.to_numeric(pd.Series(raw[rows]), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        if b.get("history"):  # in the team's words: "card_id: 9 payments in the last 1h"
            from aedetect.data.history import describe_feature

            others = _Rows(cols, rows, [c for c in self.feature_names if c.startswith(name.rsplit(".", 1)[0] + ".")])
            return pa.array(np.asarray(describe_feature(name, v, others), dtype=str), pa.string())
        return _number_reasons([name], [v])  # numbers given as text or objects

    # -- persistence --------------------------------------------------------------------------
    def to_config(self) -> dict:
        self._require_fitted()
        return {
            "feature_names": self.feature_names,
            "log_columns": self.log_columns,
            "periodic_columns": [[c, p] for c, p in self.periodic_columns],
            "blocks": self.blocks,
            "missing": self.missing,
            "max_categories": self.max_categories,
            "output_names": self.output_names,
            "mean": [float(v) for v in self.mean_],
            "scale": [float(v) for v in self.scale_],
            "n_samples_seen": int(self._count),
        }

    @classmethod
    def from_config(cls, cfg: dict) -> Preprocessor:
        p = cls(cfg["feature_names"], cfg["log_columns"],
                [(c, float(v)) for c, v in cfg["periodic_columns"]],
                blocks=_canonical_blocks([dict(b) for b in cfg["blocks"]]) if "blocks" in cfg else None,
                missing=cfg.get("missing", "error"), max_categories=cfg.get("max_categories", 20))
        p.mean_ = np.asarray(cfg["mean"], dtype="float32")
        p.scale_ = np.asarray(cfg["scale"], dtype="float32")
        p._count = int(cfg.get("n_samples_seen", 0))
        if len(p.mean_) != p.n_features_out or len(p.scale_) != p.n_features_out:
            raise DataError(
                f"preprocessing config holds {len(p.mean_)} means for {p.n_features_out} features"
            )
        return p


class _Rows(Mapping):
    """Columns `names` of `cols` on `rows`, each taken when read: a history reason reads its
    entity's other columns by name, and one of them at most."""

    def __init__(self, cols, rows: np.ndarray, names: list[str]):
        self._cols, self._rows, self._names = cols, rows, names

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return np.asarray(self._cols[name])[self._rows]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _number_reasons(names: list[str], values: list[np.ndarray]):
    """`name=value` for each value of each column (Arrow strings, the columns one after the
    other): the value as float32's shortest text, positional from 1e-7 to 1e21 (1520.5, 3,
    0.000025), converted by Arrow; `name=(missing)` for a NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    v = np.concatenate(values)
    which = pa.array(np.repeat(np.arange(len(names), dtype=np.int32), [len(x) for x in values]))

    def per_cell(texts: list[str]):
        return pa.DictionaryArray.from_arrays(which, pa.array(texts, pa.string())).cast(pa.string())

    return _joined(per_cell([f"{c}=" for c in names]), pc.cast(pa.array(v.astype(np.float32)), pa.string()),
                   np.isnan(v), per_cell([f"{c}=(missing)" for c in names]))


def _joined(prefix, shown, missing: np.ndarray, missing_text):
    """`prefix` + `shown` per cell (Arrow strings), `missing_text` where `missing`; a prefix or
    missing text is one string or one per cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.binary_join_element_wise(prefix, shown, "")
    return pc.if_else(pa.array(missing), missing_text, text) if missing.any() else text


def _as_dates(seconds: np.ndarray) -> np.ndarray:
    """Seconds since 1970 as date text; a value beyond the calendar pandas reads stays a number."""
    try:
        return pd.to_datetime(seconds, unit="s").astype(str).to_numpy(str)
    except (OverflowError, ValueError):
        return np.array([str(pd.Timestamp(v, unit="s")) if abs(v) < 9e9 else f"{v:.7g} s"
                         for v in seconds], dtype=str)


def _categories(values) -> pd.Series:
    """Category labels as their text (`aedetect.data.values.category_text`); missing (None, NaN,
    "") becomes `(missing)`."""
    out = category_text(values)
    return out.where(out.notna(), MISSING).astype(object)


def _canonical_blocks(blocks: list[dict]) -> list[dict]:
    """Stored category names read by today's rule (a folder written before it kept the integer
    code 7 of a column with gaps as "7.0")."""
    for b in blocks:
        for key in ("categories", "rare"):
            if key in b:
                b[key] = _categories(pd.Series(b[key], dtype=object)).tolist()
        if "frequencies" in b:
            names = _categories(pd.Series(list(b["frequencies"]), dtype=object))
            b["frequencies"] = dict(zip(names, b["frequencies"].values(), strict=True))
    return blocks
