"""Training rows from a folder of Parquet (or CSV) shards, streamed in bounded memory.

A folder written by `aedetect.serving.spark.sample_normals` (or any folder of `part-*.parquet` /
`*.csv` files with the feature columns) is read block by block, never whole: the preprocessing
statistics come from `Preprocessor.partial_fit` over the blocks (inside the detector's streaming
fit), training streams the blocks again each epoch through a bounded shuffle buffer, and a
seeded, bounded share of rows is held out as validation normals for early stopping, the score
statistics and the threshold. Memory is set by the block size, the shuffle buffer and the
validation cap, not by the number of rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from aedetect.errors import DataError

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
BLOCK_ROWS = 65_536


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The data files of a shard folder, in name order; Spark's `_SUCCESS` and hidden files are
    skipped. All Parquet or all CSV."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES
                   and not p.name.startswith(("_", ".")))
    if not files:
        raise DataError(f"{folder}: no .parquet or .csv shards in this folder")
    kinds = {SUFFIXES[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise DataError(f"{folder}: mixes Parquet and CSV shards; keep one format per folder")
    return files


def _batches(path: Path, columns: list[str], block_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        if SUFFIXES[path.suffix.lower()] == "parquet":
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            _check_columns(path, names, columns)
            yield from pf.iter_batches(batch_size=block_rows, columns=[c for c in columns if c in names])
        else:
            opts = pacsv.ReadOptions(block_size=1 << 24)
            with pacsv.open_csv(path, read_options=opts) as reader:
                _check_columns(path, reader.schema.names, columns)
                for batch in reader:
                    for start in range(0, batch.num_rows, block_rows):
                        yield batch.slice(start, block_rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def _check_columns(path: Path, names: list[str], columns: list[str]) -> None:
    missing = [c for c in columns[:-1] if c not in names]  # the last is the optional label
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")


def iter_blocks(files: list[Path], features: list[str], label: str | None,
                block_rows: int = BLOCK_ROWS) -> Iterator[tuple[int, int, np.ndarray]]:
    """(file index, block index, float64 rows) of normal rows (0 in the `label` column when
    the shard has it; `label` None: every row). A value that is not a finite number stops with
    its file, row and column."""
    from aedetect.data.arrow import parse_features

    for i, path in enumerate(files):
        row = 0
        for b, batch in enumerate(_batches(path, [*features, label or ""], block_rows)):
            x, reasons = parse_features(batch, features)
            bad = np.flatnonzero(reasons != None)  # noqa: E711
            if bad.size:
                raise DataError(f"{path}: row {row + bad[0] + 1}: {reasons[bad[0]]}")
            if label and label in batch.schema.names:
                y = batch.column(label).to_numpy(zero_copy_only=False)
                x = x[y == 0]
            row += batch.num_rows
            yield i, b, x


@dataclass
class ShardData:
    """A streaming training set and its held-out validation rows."""

    train: object          # unbatched tf.data.Dataset of float64 rows, re-read every epoch
    validation: np.ndarray
    files: list[Path]
    n_rows: int            # rows in the shards (before the label filter and the hold-out)


def count_rows(files: list[Path]) -> int:
    """Rows in the shards: Parquet from its footer, CSV by counting lines (one streamed pass)."""
    total = 0
    for path in files:
        if SUFFIXES[path.suffix.lower()] == "parquet":
            total += pq.ParquetFile(path).metadata.num_rows
        else:
            with open(path, "rb") as f:
                total += max(sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b"")) - 1, 0)
    return total


def _held_out(seed: int, file_index: int, block_index: int, n: int, share: float) -> np.ndarray:
    """The same rows of a block are held out on every pass, whatever the order of reading."""
    return np.random.default_rng([seed, file_index, block_index]).random(n) < share


def shard_data(folder, features, label: str | None, *, seed: int = 0,
               validation_fraction: float = 0.1, max_validation: int = 100_000,
               block_rows: int = BLOCK_ROWS) -> ShardData:
    """Stream `folder`'s shards for `AutoencoderDetector.fit`: hold out about
    `validation_fraction` of the rows, at most about `max_validation`, seeded; the rest train."""
    import tensorflow as tf

    if not 0 < validation_fraction < 1 or max_validation < 1:
        raise ValueError(f"validation_fraction must be in (0, 1) and max_validation >= 1; got "
                         f"{validation_fraction}, {max_validation}")
    features = list(features)
    files = shard_files(folder)
    n_rows = count_rows(files)
    if n_rows == 0:
        raise DataError(f"{folder}: the shards hold no rows")
    share = min(validation_fraction, max_validation / n_rows)
    val, n_train = [], 0
    for i, b, x in iter_blocks(files, features, label, block_rows):
        held = _held_out(seed, i, b, len(x), share)
        val.append(x[held])
        n_train += int((~held).sum())
    validation = np.concatenate(val) if val else np.empty((0, len(features)))
    if len(validation) < 2:
        raise DataError(f"{folder}: too few normal rows to hold out for validation "
                        f"({len(validation)}); add rows or raise validation_fraction")

    def train_blocks():
        for i, b, x in iter_blocks(files, features, label, block_rows):
            yield x[~_held_out(seed, i, b, len(x), share)]

    spec = tf.TensorSpec([None, len(features)], tf.float64)
    train = tf.data.Dataset.from_generator(train_blocks, output_signature=spec).unbatch()
    # A known length lets Keras count the steps of an epoch instead of running into the end
    # of the data (and warning about it) on every epoch.
    train = train.apply(tf.data.experimental.assert_cardinality(n_train))
    return ShardData(train, validation, files, n_rows)


def fit_from_shards(detector, folder, schema=None, *, validation_fraction: float = 0.1,
                    max_validation: int = 100_000, callbacks=(), block_rows: int = BLOCK_ROWS):
    """Fit `detector` on the shards of `folder`, whose columns `schema` (a `DatasetSchema`;
    default: the detector's own) describes: its features train, rows labelled 1 are left out."""
    import tensorflow as tf

    if schema is None and getattr(detector, "schema", None) is not None:
        schema = detector.dataset_schema
    if schema is None:
        raise ValueError("fit_from_shards needs the shards' schema: pass schema= or give the "
                         "detector one")
    features = list(schema.features)
    data = shard_data(folder, features, schema.label, seed=detector.seed,
                      validation_fraction=validation_fraction, max_validation=max_validation,
                      block_rows=block_rows)
    detector.fit(data.train, validation_data=tf.data.Dataset.from_tensor_slices(data.validation),
                 callbacks=callbacks, feature_names=features)
    return detector, data
