"""Training workflows the CLI and Python users call: settings, split, train, threshold, save
with metadata; warm starts; the autoencoder beside the baselines."""

from aedetect._imports import lazy_exports

__all__ = ["TrainConfig", "build_config", "compare_methods", "train_detector"]
__getattr__ = lazy_exports(__name__, {
    "TrainConfig": "config", "build_config": "config", "train_detector": "workflow",
    "compare_methods": "compare"})
