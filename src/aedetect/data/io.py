"""Read and write CSV or Parquet through pyarrow; validate on read, write atomically."""

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


def table_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .csv or .parquet")
    return FORMATS[suffix]


def read_raw(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame with no schema check."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if fmt == "csv":
            table = pacsv.read_csv(path)
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
            pacsv.write_csv(table, tmp)
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
