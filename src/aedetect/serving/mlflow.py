"""MLflow: a model folder logged as an MLflow pyfunc model that scores with the NumPy runtime.

`log_model(model_dir, name)` logs `AedetectModel` as "models from code" (MLflow 3 refuses to
unpickle a pickled model unless told to): its one artifact is the verified model folder, and the
aedetect package's own source goes with it (`code_paths`), so `mlflow.pyfunc.load_model` and
`mlflow models serve --env-manager local` score in a process where aedetect is not installed.
`load_context` opens the folder with `aedetect.serving.runtime.open_scorer` (no TensorFlow; a
label-aware folder: its scikit-learn head over the NumPy runtime);
`predict` is `aedetect.serving.batch.score_table`: the columns `aedetect score` writes (`score`,
`flag`, `top1_feature`, `top1_reason`, `top1_contribution`, ...), with the same numbers.

One `predict` call is one file given to `aedetect score`: a model with entity history features
computes each row's history from the model's saved state and the call's own rows (any order
within the call), never from an earlier call. The first row that cannot be scored fails the
call with its row number and reason (HTTP 400 under `mlflow models serve`).

The logged requirements are the packages scoring imports, pinned to the versions of this
process (those of pyproject.toml in an aedetect install), and mlflow-skinny: aedetect itself is
not on PyPI, its source is in the model; a label-aware model (a folder with a supervised head)
adds scikit-learn and skops. Such a folder written before hybrid format 3 whose head reads the
code layer as Keras computed it needs TensorFlow to score and is refused.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from aedetect.errors import AedetectError, ArtifactError

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # log_model says which extra to install
    PythonModel = object

ARTIFACT = "aedetect_model"  # the name of the model folder among the MLflow model's artifacts
CODE_FILE = "aedetect_pyfunc.py"  # the models-from-code file, written at log time
# What scoring imports (`tests/test_mlflow.py` checks the list in a fresh process), and MLflow.
REQUIREMENTS = ("numpy", "pandas", "pyarrow", "pydantic", "threadpoolctl", "mlflow-skinny")
LABEL_AWARE_REQUIREMENTS = ("scikit-learn", "skops")  # a label-aware model's head, beside them
MLFLOW_TYPES = {"numeric": "double", "integer": "double", "boolean": "boolean", "categorical": "string",
                "datetime": "datetime"}

_MODEL_CODE = '''"""An aedetect model folder as an MLflow pyfunc model (aedetect.serving.mlflow)."""
import mlflow

from aedetect.serving.mlflow import AedetectModel

mlflow.models.set_model(AedetectModel())
'''


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise AedetectError("MLflow support needs mlflow-skinny: pip install 'aedetect[mlflow]'") from None
    return mlflow


class AedetectModel(PythonModel):
    """The pyfunc model: the NumPy runtime on the logged model folder."""

    def load_context(self, context) -> None:
        from aedetect.serving.runtime import open_scorer

        self.scorer = open_scorer(context.artifacts[ARTIFACT])
        self.top_k = int((context.model_config or {}).get("top_k", 3))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """`score`, `flag` and the top-k columns of each row, as `aedetect score` writes them."""
        from mlflow.exceptions import MlflowException

        from aedetect.data.arrow import frame_table
        from aedetect.errors import DataError
        from aedetect.serving.batch import needed_columns, score_table

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        columns = [c for c in needed_columns(self.scorer) if c in frame.columns]  # score_table names the rest
        try:
            scored = score_table(self.scorer, frame_table(frame, columns), top_k=self.top_k).to_pandas()
        except DataError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        scored["flag"] = scored["flag"].astype("int64")
        scored.index = frame.index
        return scored


def signature(model_dir: str | os.PathLike, top_k: int = 3):
    """The MLflow signature of a model folder: one input per column the model reads (string for
    category and id columns, double for numbers, datetime for dates, text for dates with a
    format of their own, boolean), outputs `score` (double), `flag` (long) and the top-k columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from aedetect.serving.batch import needed_columns
    from aedetect.serving.runtime import open_scorer

    scorer = open_scorer(model_dir)
    inputs = [ColSpec(input_type(scorer.schema, c), c) for c in needed_columns(scorer)]
    outputs = [ColSpec("double", "score"), ColSpec("long", "flag")]
    columns = len(dict.fromkeys(scorer.preprocessor_.sources))  # the input columns behind a score
    for i in range(1, min(top_k, columns) + 1):
        outputs += [ColSpec("string", f"top{i}_feature"), ColSpec("string", f"top{i}_reason"),
                    ColSpec("double", f"top{i}_contribution")]
    return ModelSignature(Schema(inputs), Schema(outputs))


def input_type(schema, column: str) -> str:
    """The MLflow type of an input column of a model with dataset schema `schema` (None: a
    model of numbers)."""
    if schema is None:
        return "double"
    spec = schema.column(column)
    if spec.role == "id":  # an entity of the history: grouped by its text
        return "string"
    if spec.type == "datetime" and spec.format is not None:
        return "string"  # read with the model's format, never re-read by MLflow first
    return MLFLOW_TYPES[spec.type]


def requirements(label_aware: bool = False) -> list[str]:
    """`REQUIREMENTS` (and `LABEL_AWARE_REQUIREMENTS` for a `label_aware` model) pinned to the
    versions installed here."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in REQUIREMENTS + (LABEL_AWARE_REQUIREMENTS if label_aware else ()):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            raise AedetectError(f"{name} is not installed; MLflow logging needs it: "
                                "pip install 'aedetect[mlflow]'") from None
    return out


def log_model(model_dir: str | os.PathLike, name: str = "model", *, top_k: int = 3,
              registered_model_name: str | None = None, **kwargs):
    """Log the model folder `model_dir` as a pyfunc model called `name` (to the active run if
    there is one; MLflow 3 logs a model without a run too) and return MLflow's ModelInfo;
    `registered_model_name` also registers it. `top_k`: the contributing columns per row in
    `predict`'s output. Other keyword arguments go to `mlflow.pyfunc.log_model` (`tags`,
    `metadata`, `input_example`, `await_registration_for`...)."""
    mlflow = _mlflow()
    from aedetect.store.folder import open_folder

    taken = {"python_model", "artifacts", "code_paths", "signature", "pip_requirements",
             "model_config", "conda_env", "loader_module", "data_path"} & set(kwargs)
    if taken:
        raise TypeError(f"log_model sets {sorted(taken)} itself")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0; got {top_k}")
    from aedetect.serving.runtime import needs_tensorflow

    folder = open_folder(model_dir)  # verified: every file against the manifest
    if needs_tensorflow(folder):
        raise ArtifactError(f"{folder.path}: this label-aware model's head reads the network's code layer "
                            "as Keras computed it (a folder written before hybrid format 3), so it needs "
                            "TensorFlow to score; MLflow logging takes models scored by the NumPy runtime "
                            "only: retrain it with this aedetect")
    import aedetect

    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / CODE_FILE
        code.write_text(_MODEL_CODE)
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(code), artifacts={ARTIFACT: str(folder.path)},
            code_paths=[str(Path(aedetect.__file__).parent)], signature=signature(folder.path, top_k),
            pip_requirements=requirements(folder.is_hybrid), model_config={"top_k": top_k},
            registered_model_name=registered_model_name, **kwargs)
