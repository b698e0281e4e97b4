"""The model folder: files written atomically, one manifest model that checks itself, the
weights format the NumPy runtime reads. Needs no TensorFlow."""

from aedetect._imports import lazy_exports

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "Manifest", "read_manifest", "write_folder"]
__getattr__ = lazy_exports(__name__, {name: "folder" for name in __all__})
