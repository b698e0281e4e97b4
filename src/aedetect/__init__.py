"""aedetect: anomaly detection in tabular data with autoencoders (Keras 3 on TensorFlow 2)."""

from aedetect.detector import AutoencoderDetector
from aedetect.errors import AedetectError, ArtifactError, DataError

__version__ = "0.1.0"

__all__ = ["AutoencoderDetector", "AedetectError", "ArtifactError", "DataError", "__version__"]
