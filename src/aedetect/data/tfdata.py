"""tf.data input pipelines for rows streamed from sharded TFRecord files (rows in memory are
batched by `aedetect.model.fitloop` without tf.data).

TFRecord shards hold one `tf.train.Example` per row (`features`: float list of the raw columns,
`label`: int64), so any TF tool can read them. Training from shards streams: shards are read
in a seeded order, interleaved, and shuffled through a bounded buffer, so memory stays bounded
however large the training set is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from aedetect.errors import DataError

META = "meta.json"
AUTOTUNE = -1  # tf.data.AUTOTUNE


def stream_dataset(rows, preprocessor, batch_size: int, seed: int, buffer: int):
    """Shuffled batches from an unbatched Dataset of raw rows, preprocessed in-graph."""
    ds = rows.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(preprocessor.transform_tf, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def write_tfrecords(
    x: np.ndarray,
    out_dir: str | os.PathLike,
    name: str,
    y: np.ndarray | None = None,
    rows_per_shard: int = 50_000,
) -> list[Path]:
    """Write rows as `{name}-NNNNN-of-MMMMM.tfrecord` shards in `out_dir`."""
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x, dtype="float32")
    n_shards = max(1, -(-len(x) // rows_per_shard))
    paths = []
    for s in range(n_shards):
        path = out / f"{name}-{s:05d}-of-{n_shards:05d}.tfrecord"
        tmp = path.with_suffix(".tfrecord.part")
        with tf.io.TFRecordWriter(str(tmp)) as w:
            for i in range(s * rows_per_shard, min(len(x), (s + 1) * rows_per_shard)):
                feat = {"features": tf.train.Feature(float_list=tf.train.FloatList(value=x[i]))}
                if y is not None:
                    feat["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y[i])]))
                w.write(tf.train.Example(features=tf.train.Features(feature=feat))
                        .SerializeToString())
        os.replace(tmp, path)
        paths.append(path)
    return paths


def write_meta(out_dir: str | os.PathLike, meta: dict) -> None:
    path = Path(out_dir) / META
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def read_meta(shard_dir: str | os.PathLike) -> dict:
    path = Path(shard_dir) / META
    if not path.is_file():
        raise DataError(f"{shard_dir}: not a TFRecord folder written by aedetect ({META} missing)")
    return json.loads(path.read_text())


def read_tfrecords(shard_dir: str | os.PathLike, name: str, seed: int = 0, with_labels=False):
    """An unbatched Dataset of raw float32 rows (and labels) from the `name` shards."""
    import tensorflow as tf

    meta = read_meta(shard_dir)
    n_features = len(meta["feature_names"])
    files = sorted(str(p) for p in Path(shard_dir).glob(f"{name}-*.tfrecord"))
    if not files:
        raise DataError(f"{shard_dir}: no shards named {name}-*.tfrecord")
    spec = {"features": tf.io.FixedLenFeature([n_features], tf.float32)}
    if with_labels:
        spec["label"] = tf.io.FixedLenFeature([1], tf.int64)
    order = tf.data.Dataset.from_tensor_slices(files)
    if seed is not None and len(files) > 1:
        order = order.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = order.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                          num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(4096).map(lambda r: tf.io.parse_example(r, spec),
                            num_parallel_calls=AUTOTUNE, deterministic=True)
    if with_labels:
        ds = ds.map(lambda d: (d["features"], tf.squeeze(d["label"], -1))).unbatch()
    else:
        ds = ds.map(lambda d: d["features"]).unbatch()
    return ds


def load_tfrecords(shard_dir, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a (small) labelled split fully into memory, in file order."""
    ds = read_tfrecords(shard_dir, name, seed=None, with_labels=True).batch(65_536)
    pairs = [(a.numpy(), b.numpy()) for a, b in ds]
    return np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])
