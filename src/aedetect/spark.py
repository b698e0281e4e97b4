"""`aedetect.spark` (scoring on Apache Spark) lives in `aedetect.serving.spark`; this path stays for user code."""

from aedetect._imports import forward

forward(__name__, "aedetect.serving.spark")
