"""Read and write CSV (plain, .gz or .zst) or Parquet through pyarrow; validate on read, write
atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from aedetect.data.schema import CREDITCARD, Schema, validate_frame
from aedetect.errors import DataError

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


def read_raw(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV (plain or compressed) or Parquet file into a DataFrame, no schema check."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if fmt == "csv":
            with pa.input_stream(str(path), compression=compression(path)) as f:
                table = pacsv.read_csv(f)
        else:
            table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataError(f"{path}: cannot read as {fmt.upper()}: {exc}") from None
    return table.to_pandas()


def read_table(
    path: str | os.PathLike,
    schema: Schema = CREDITCARD,
    *,
    require_label: bool = True,
    allow_extra: bool = False,
) -> pd.DataFrame:
    """Read a CSV or Parquet file and check it against `schema` (see `validate_frame`)."""
    df = read_raw(path)
    return validate_frame(
        df, schema, source=str(path), require_label=require_label, allow_extra=allow_extra
    )


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write CSV or Parquet (by suffix) to a temporary file, then rename: never half-written."""
    path = Path(path)
    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        if fmt == "csv":
            with pa.output_stream(tmp, compression=compression(path)) as f:
                pacsv.write_csv(table, f)
        else:
            # Dictionary encoding pays for repeated values, not for measured floats: trying it on
            # every float column made writing several times slower and the file larger.
            pq.write_table(table, tmp, use_dictionary=[
                f.name for f in table.schema if not pa.types.is_floating(f.type)])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
