"""Read and write CSV (plain, .gz or .zst) or Parquet through pyarrow; validate on read, write
atomically."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.schema import DatasetSchema, validate_frame
from aedetect.errors import DataError
from aedetect.files import atomic_file

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSION = {".gz": "gzip", ".zst": "zstd"}  # of CSV files
SUFFIXES = ".csv, .csv.gz, .csv.zst, .parquet"


def table_format(path: str | os.PathLike) -> str:
    """'csv' or 'parquet', from the file name (`.csv.gz` and `.csv.zst` are CSV)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in COMPRESSION and Path(p.stem).suffix.lower() == ".csv":
        return "csv"
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected {SUFFIXES}")
    return FORMATS[suffix]


def compression(path: str | os.PathLike) -> str | None:
    """The compression of a CSV file ('gzip', 'zstd'), from its name; None when plain."""
    return COMPRESSION.get(Path(path).suffix.lower())


def column_names(path: str | os.PathLike) -> list[str]:
    """The column names of a CSV (its header row, plain or compressed) or Parquet file (its
    schema), without reading the rows."""
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(str(path)).names)
    with pa.input_stream(str(path), compression=compression(path)) as f:
        reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=1 << 20))
        names = list(reader.schema.names)
        reader.close()
    return names


MAX_BLOCK_BYTES = 1 << 30  # pyarrow's block size is a 32-bit count


def _csv(path: Path, **options) -> pa.Table:
    """Parse a CSV file, plain or compressed (the name says which).

    pyarrow parses in blocks (1 MB by default) and refuses a row longer than one ("straddling
    object straddles two block boundaries"); the file is then parsed again with blocks 16 times
    larger, up to `MAX_BLOCK_BYTES`, so a long cell reads here as it does in the batch scorer,
    whose blocks hold whole rows.
    """
    read = options.pop("read_options", None) or pacsv.ReadOptions()
    while True:
        try:
            with pa.input_stream(str(path), compression=compression(path)) as f:
                return pacsv.read_csv(f, read_options=read, **options)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or read.block_size >= MAX_BLOCK_BYTES:
                raise
            read = pacsv.ReadOptions(use_threads=read.use_threads,
                                     block_size=min(read.block_size * 16, MAX_BLOCK_BYTES))


def check_input_file(path: Path) -> None:
    """A readable, non-empty file: say what is wrong (a folder, missing, empty) otherwise."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")


def check_column_names(names: list[str], path) -> None:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise DataError(f"{path}: column name {n!r} appears more than once (columns "
                            f"{seen[n] + 1} and {i + 1}); every column needs its own name")
        seen[n] = i


def text_columns(schema: DatasetSchema) -> list[str]:
    """The columns a CSV reader takes as their text, for the schema's reading rules
    (`aedetect.data.values`) to read: categories (a code keeps its leading zeros), booleans,
    datetimes (one date parser, not the CSV reader's) and ids."""
    return [c.name for c in schema.columns
            if c.type in ("categorical", "boolean", "datetime") or c.role == "id"]


def needs_text_reread(path: str | os.PathLike, df: pd.DataFrame, schema: DatasetSchema) -> bool:
    """True when `df`, read from the CSV file `path` without a schema, typed a column that
    `schema` reads as text (e.g. codes `0742` read as the integer 742)."""
    return table_format(path) == "csv" and any(
        c in df.columns and df[c].dtype != object for c in text_columns(schema))


def read_raw(path: str | os.PathLike, schema: DatasetSchema | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame with no schema check.

    Only an empty cell is missing: text such as 'NaN' or 'NA' is kept as written, so a check
    reports it as the value it is rather than as an empty value. With `schema`, a CSV file's
    `text_columns` are read as text (Parquet columns keep their types).
    """
    path = Path(path)
    check_input_file(path)
    fmt = table_format(path)
    try:
        if fmt == "csv":
            opts = pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True)
            if schema is not None:
                opts.column_types = {c: pa.string() for c in text_columns(schema)}
            table = _csv(path, convert_options=opts)
            check_column_names(table.schema.names, path)
            nan_cols = _float_columns_with_nan(table)
            if nan_cols:  # read those columns again as text, to report the cells as written
                opts.column_types = {**opts.column_types, **{c: pa.string() for c in nan_cols}}
                table = _csv(path, convert_options=opts)
        else:
            table = parquet().read_table(path)
            check_column_names(table.schema.names, path)
            for c in _float_columns_with_nan(table):  # NaN is not missing: show it as 'nan'
                i = table.schema.get_field_index(c)
                table = table.set_column(i, c, table.column(c).cast(pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        row = _first_bad_csv_row(path) if fmt == "csv" else None
        raise DataError(f"{path}: {row}" if row else
                        f"{path}: cannot read as {fmt.upper()}: {short_error(exc)}") from None
    check_column_names(table.schema.names, path)
    return table.to_pandas()


def _first_bad_csv_row(path: Path) -> str | None:
    """'row N: expected X fields, found Y: ...' for the first row the CSV parser cannot split.

    Only on the error path: a single-threaded parse that can number the rows.
    """
    found: list[str] = []

    def handler(row) -> str:
        line = row.number - 1 if row.number else "?"  # the header is line 1
        found.append(f"row {line}: expected {row.expected_columns} fields, found "
                     f"{row.actual_columns}: {short_error(Exception(repr(row.text)))}")
        return "error"

    try:
        _csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                       parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
                       convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError):
        pass
    return found[0] if found else None


def _float_columns_with_nan(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if pa.types.is_floating(f.type)
            and pc.any(pc.is_nan(table.column(f.name))).as_py()]


def short_error(exc: Exception) -> str:
    """Arrow's message, first line only and at most 200 characters (it can quote raw bytes)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def read_table(
    path: str | os.PathLike,
    schema: DatasetSchema = CREDITCARD,
    *,
    require_label: bool = True,
    allow_extra: bool = False,
) -> pd.DataFrame:
    """Read a CSV or Parquet file of numbers and check it against `schema` (see
    `validate_frame`; by default the credit-card file's). `read_raw` reads any table."""
    df = read_raw(path)
    return validate_frame(
        df, schema, source=str(path), require_label=require_label, allow_extra=allow_extra
    )


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write CSV or Parquet (by suffix) to a temporary file, then rename: never half-written."""
    path = Path(path)
    fmt = table_format(path)
    with atomic_file(path) as tmp:
        table = pa.Table.from_pandas(df, preserve_index=False)
        if fmt == "csv":
            with pa.output_stream(tmp, compression=compression(path)) as f:
                pacsv.write_csv(table, f)
        else:
            # Dictionary encoding pays for repeated values, not for measured floats: trying it on
            # every float column made writing several times slower and the file larger.
            parquet().write_table(table, tmp, use_dictionary=[
                f.name for f in table.schema if not pa.types.is_floating(f.type)])
    return path


def frame_fingerprint(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    if all(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns):
        h.update(np.ascontiguousarray(df.to_numpy(dtype="float64")).tobytes())
    else:  # categories, datetimes, missing values: by their text, so that the same table read
        # from CSV (timestamps parsed) and from Parquet (timestamps as text) has one fingerprint
        text = df.astype(str).where(df.notna(), "")
        h.update(pd.util.hash_pandas_object(text, index=False).to_numpy().tobytes())
    return "sha256:" + h.hexdigest()


def parquet():
    """pyarrow.parquet, imported when a Parquet file is read or written: it brings pyarrow's
    file systems and TLS (25 ms), which a CSV never needs."""
    import pyarrow.parquet

    return pyarrow.parquet
