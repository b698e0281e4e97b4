"""aedetect: anomaly detection in tabular data with autoencoders (Keras 3 on TensorFlow 2)."""

from aedetect.errors import AedetectError, ArtifactError, DataError

__version__ = "0.1.0"

__all__ = ["AutoencoderDetector", "AedetectError", "ArtifactError", "DataError", "load_scorer",
           "__version__"]


def __getattr__(name: str):
    # Imported on first use, so a scoring process (runtime, service) never loads the training
    # stack (scikit-learn, pandas, TensorFlow) just by importing the package.
    if name == "AutoencoderDetector":
        from aedetect.model.detector import AutoencoderDetector

        return AutoencoderDetector
    if name == "load_scorer":
        from aedetect.serving.runtime import load_scorer

        return load_scorer
    raise AttributeError(f"module 'aedetect' has no attribute {name!r}")
