"""Export a detector as a TensorFlow SavedModel that any TF runtime (e.g. TensorFlow Serving) serves.

The `serving_default` signature takes the raw columns, one tensor of shape [None] per input
column named like the column (`Time`, `V1`, ..., `Amount`): float32 for numbers, string for
categories, float64 seconds since 1970 for datetimes (see `input_dtypes`), so TF Serving's JSON
`{"instances": [{"Time": 0, "V1": -1.36, ...}]}` maps straight onto it. Preprocessing runs inside
the graph (`Preprocessor.transform_tf`) and the score is `AutoencoderDetector.score_tf`, the
same computation as `score_samples`. Outputs: `score` (float64 [None]) and `flag` (int32 [None],
1 when score > threshold). The folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aedetect.artifact import atomic_folder

EXPORT_INFO = "aedetect-export.json"


def input_dtypes(detector) -> dict[str, str]:
    """The signature's dtype of each input column: float32 numbers (NaN = missing), strings for
    categories ("" = missing), float64 seconds since 1970 for datetimes."""
    pre = detector.preprocessor_
    out = {}
    for b in pre.blocks:
        if b["kind"] in ("onehot", "frequency"):
            out[b["column"]] = "string"
        elif b.get("datetime"):
            out[b["column"]] = "float64"
        else:
            out[b["column"]] = "float32"
    return out


def _module(detector):
    import tensorflow as tf

    names = list(detector.feature_names_in_)
    dtypes = input_dtypes(detector)
    spec = {name: tf.TensorSpec([None], getattr(tf, dtypes[name]), name=_safe(name)) for name in names}
    numbers_only = detector.preprocessor_.numbers_only

    class ExportedDetector(tf.Module):
        def __init__(self):
            super().__init__(name="aedetect")
            self.model = detector.model_  # tracked, so its weights are saved with the graph
            self.tables = detector.preprocessor_.tf_tables()  # category lookups, tracked too
            self.threshold = tf.constant(detector.threshold_, tf.float64)

        @tf.function(input_signature=[spec])
        def serve(self, columns):
            x = tf.stack([columns[name] for name in names], axis=1) if numbers_only else columns
            score = detector.score_tf(detector.preprocessor_.transform_tf(x))
            return {"score": score, "flag": tf.cast(score > self.threshold, tf.int32)}

    return ExportedDetector()


def _safe(name: str) -> str:
    """A TensorSpec name (graph op names allow [A-Za-z0-9_.-/] and no leading symbol)."""
    out = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)
    return out if out[:1].isalnum() else f"c_{out}"


def export_savedmodel(detector, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `detector` as a SavedModel folder at `path` (see the module docstring)."""
    import tensorflow as tf

    path = Path(path)
    with atomic_folder(path, overwrite=overwrite) as tmp:
        module = _module(detector)
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})
        info = {"format": "tensorflow-savedmodel", "signature": "serving_default",
                "inputs": {name: f"{dtype} [None]" for name, dtype in input_dtypes(detector).items()},
                "outputs": {"score": "float64 [None]", "flag": "int32 [None]"},
                "threshold": float(detector.threshold_)}
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return path
