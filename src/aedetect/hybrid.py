"""`aedetect.hybrid` (the label-aware mode) lives in `aedetect.model.hybrid`; this path stays for user code."""

from aedetect._imports import forward

forward(__name__, "aedetect.model.hybrid")
