"""`aedetect.thresholds` (threshold rules) lives in `aedetect.model.thresholds`; this path stays for user code."""

from aedetect._imports import forward

forward(__name__, "aedetect.model.thresholds")
