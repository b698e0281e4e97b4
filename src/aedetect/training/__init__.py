"""Training workflows the CLI and Python users call: settings, split, train, threshold, save
with metadata; warm starts; the autoencoder beside the baselines."""

from aedetect._imports import lazy_exports

__all__ = ["TrainConfig", "TrainingRun", "build_config", "compare_methods", "train_detector",
           "train_from_shards", "train_from_table"]
__getattr__ = lazy_exports(__name__, {
    "TrainConfig": "config", "build_config": "config", "train_detector": "workflow",
    "TrainingRun": "run", "train_from_table": "run", "train_from_shards": "run",
    "compare_methods": "compare"})
