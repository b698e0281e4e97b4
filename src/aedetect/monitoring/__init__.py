"""Drift: the reference profile stored with a model, the batch monitor and its report, and the
service's rolling gauges."""

from aedetect._imports import lazy_exports

__all__ = ["DriftSettings", "Reference", "load_reference", "monitor_frame"]
__getattr__ = lazy_exports(__name__, {
    "DriftSettings": "reference", "Reference": "reference", "load_reference": "reference",
    "monitor_frame": "batch"})
