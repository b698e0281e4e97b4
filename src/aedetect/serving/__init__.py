"""Scoring a trained model: the NumPy runtime (no TensorFlow), explanations, batch files, the
REST service with the V2 protocol, SavedModel and ONNX exports, and Spark."""

from aedetect._imports import lazy_exports

__all__ = ["Scorer", "create_app", "export_onnx", "export_savedmodel", "load_scorer", "score_file"]
__getattr__ = lazy_exports(__name__, {
    "Scorer": "runtime", "load_scorer": "runtime", "score_file": "batch", "create_app": "app",
    "export_onnx": "export", "export_savedmodel": "export"})
