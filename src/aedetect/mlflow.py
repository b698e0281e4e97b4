"""`aedetect.mlflow` (logging a model folder to MLflow) lives in `aedetect.serving.mlflow`."""

from aedetect._imports import forward

forward(__name__, "aedetect.serving.mlflow")
