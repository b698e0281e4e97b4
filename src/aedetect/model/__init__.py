"""The model: the estimator, its network and training loop, preprocessing, scores, the data-shaped
defaults, threshold rules with their uncertainty, and the label-aware head."""

from aedetect._imports import lazy_exports

__all__ = ["AutoencoderDetector", "HybridDetector", "Preprocessor", "Threshold", "choose_threshold",
           "load_detector"]
__getattr__ = lazy_exports(__name__, {
    "AutoencoderDetector": "detector", "load_detector": "detector", "HybridDetector": "hybrid",
    "Preprocessor": "preprocessing", "Threshold": "thresholds", "choose_threshold": "thresholds"})
