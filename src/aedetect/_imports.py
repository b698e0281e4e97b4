"""How aedetect imports: TensorFlow quietly, heavy parts lazily, moved modules forwarded.

TensorFlow: imported without the C++ start-up lines it writes straight to stderr.

TensorFlow logs through absl before `TF_CPP_MIN_LOG_LEVEL` is read, so the only way to keep a
CLI's output clean is to point file descriptor 2 elsewhere while it loads. An import error is
still raised normally, with its message.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = sys.modules.get("tensorflow")
    if tf is not None:  # already imported (None there means "cannot be imported": the import says so)
        return tf
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


def lazy_exports(package: str, names: dict[str, str]):
    """A module `__getattr__` for a package's `__init__`: `names[attr]` is the submodule that
    defines `attr`, imported on first use, so importing a package loads none of its heavy parts
    (a scoring process never imports TensorFlow or pandas just by naming `aedetect.serving`)."""
    import importlib

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def forward(name: str, target: str) -> None:
    """Make the module `name` the module `target`: an import path the README documents keeps
    working after the code moved (one module object, so patches and isinstance checks agree)."""
    import importlib

    sys.modules[name] = importlib.import_module(target)
