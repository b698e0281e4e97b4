"""`aedetect.scoring` (batch scoring of files) lives in `aedetect.serving.batch`; this path stays for user code."""

from aedetect._imports import forward

forward(__name__, "aedetect.serving.batch")
