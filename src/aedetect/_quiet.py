"""Import TensorFlow without the C++ start-up lines it writes straight to stderr.

TensorFlow logs through absl before `TF_CPP_MIN_LOG_LEVEL` is read, so the only way to keep a
CLI's output clean is to point file descriptor 2 elsewhere while it loads. An import error is
still raised normally, with its message.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery logs too (e.g. no CUDA driver)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf
