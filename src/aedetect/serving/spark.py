"""Score a data lake on Apache Spark, and draw seeded training samples from it.

`score(df, model_dir)` runs the model inside Spark's Python workers with `mapInArrow`: each
Arrow batch is validated and scored as it comes, so a row that cannot be scored (null, NaN, inf,
text in a numeric column) gets a null score and a `reason` instead of failing the job; no Spark
cast is involved, so Spark 4's ANSI mode never sees a bad value. The DataFrame's schema is
checked against the model's manifest on the driver before any task runs. The model folder is
verified on the driver, shipped as an archive with `spark.addArtifacts(..., archive=True)`
(classic and Spark Connect alike), re-verified on each worker by sha256 and loaded once per
Python worker (see `aedetect.serving.spark_worker`). Before the first model is shipped to a session,
one worker is asked to import what scoring needs (`check_workers`), so a worker Python without
aedetect is named in one line instead of failing the job. `score_udf` is the same scoring as a
column expression, through `pyspark.ml.functions.predict_batch_udf`.

Outputs are written with modes both classic Spark and Spark Connect know ("error", "overwrite"):
the refusal of an existing output is checked through the session first (`write_parquet`), and
Spark's errors on the CLI's path become one line (`spark_errors`).

A model with entity history features (`aedetect.data.history`) needs each row's past: `score`
first adds them with `with_history` (one shuffle by each entity column; docs/scale.md), so they
equal `add_history` on the whole DataFrame after the model's state.

Training stays on one node (the network is small and quality saturates early; see
docs/scale.md): `sample_normals` writes a seeded sample of normal rows as Parquet shards, which
`aedetect train --data shards/` streams in bounded memory.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from aedetect.errors import AedetectError, DataError, OutputError
from aedetect.serving import spark_worker as worker
from aedetect.serving.spark_worker import ShippedModel, manifest_digest, output_columns, score_batches

NUMERIC = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType",
           "DecimalType")
# Text columns are accepted (a lake read from CSV without type inference holds strings): each
# value is parsed in the worker, and a value that is not a number gets a reason, not a failure.
ACCEPTED = (*NUMERIC, "StringType")
# A model with a dataset schema: categories take any type (read as text), datetimes a
# timestamp, a date or text.
ACCEPTED_BY_KIND = {"number": ACCEPTED,  # a boolean is not a number (aedetect.data.values)
                    "boolean": (*ACCEPTED, "BooleanType"),
                    "category": (*ACCEPTED, "BooleanType"),
                    "datetime": ("TimestampType", "TimestampNTZType", "DateType", "StringType")}


def _pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise AedetectError("Spark support needs pyspark: pip install 'aedetect[spark]'") from None


# -- schema -----------------------------------------------------------------------------------
def check_schema(schema, features, id_columns=(), kinds=()) -> None:
    """Raise DataError naming the first column of the Spark `schema` that the model cannot use:
    missing, named with another case (Spark SQL would resolve it, the Arrow batch would not),
    or of a type that is neither numeric nor text."""
    fields = {f.name: f for f in schema.fields}
    lower = {}
    for name in fields:
        lower.setdefault(name.lower(), name)
    for col in [*features, *id_columns]:
        if col in fields:
            continue
        other = lower.get(col.lower())
        if other is not None:
            raise DataError(f"column {other!r} differs in case from the model's {col!r}; rename it "
                            f"(df.withColumnRenamed({other!r}, {col!r}))")
        what = "the model's feature" if col in features else "id column"
        raise DataError(f"missing column {col!r} ({what}); the DataFrame has {list(fields)}")
    by_col = dict(zip(features, kinds, strict=True)) if kinds else {}
    for col in features:
        kind = type(fields[col].dataType).__name__
        if col in by_col and by_col[col] != "number":
            if kind not in ACCEPTED_BY_KIND[by_col[col]]:
                raise DataError(f"column {col!r} has type {fields[col].dataType.simpleString()}; the "
                                f"model reads it as a {by_col[col]} ({', '.join(ACCEPTED_BY_KIND[by_col[col]])})")
            continue
        allowed = ACCEPTED_BY_KIND["number"] if col in by_col else ACCEPTED
        if kind not in allowed:
            raise DataError(f"column {col!r} has type {fields[col].dataType.simpleString()}; the model "
                            "needs a number (or text holding a number)")


def check_columns(schema, shipped: ShippedModel, id_columns=()) -> None:
    """`check_schema` for the columns a model reads: for a model with entity history, the
    columns its history is computed from instead of the history features."""
    h = shipped.history
    if h is None:
        check_schema(schema, shipped.features, id_columns, shipped.input_kinds)
        return
    derived = {n for names in h.features for n in names}
    kinds = {f: k for f, k in zip(shipped.features, shipped.input_kinds, strict=True) if f not in derived}
    names = schema.fieldNames()
    lower = {n.lower() for n in names}
    for col, kind in zip(h.columns, h.kinds, strict=True):
        if col not in names and col.lower() not in lower:
            raise DataError(f"missing column {col!r} (the model's history features are computed from "
                            f"it); the DataFrame has {names}")
        kinds.setdefault(col, kind)
    taken = [n for n in names if n.startswith("_aedetect_")]
    if taken:
        raise DataError(f"column {taken[0]!r}: names starting with '_aedetect_' are aedetect's own "
                        "(history); rename it")
    check_schema(schema, list(kinds), id_columns, list(kinds.values()))


# -- Spark's errors, outputs and the workers' Python -------------------------------------------
def _condition(exc) -> str | None:
    """Spark's error condition (PATH_NOT_FOUND, ...) of a PySpark error, or None."""
    for name in ("getCondition", "getErrorClass"):
        get = getattr(exc, name, None)
        if get is not None:
            try:
                return get()
            except Exception:  # noqa: BLE001 - an error without a condition
                return None
    return None


def error_line(exc: BaseException) -> str:
    """One line for an error Spark raised: the error a Python worker's traceback ends with, the
    reason a task failed, or else the first line of Spark's message; never the JVM's stack."""
    text = str(exc).split("JVM stacktrace:")[0]
    lines = [re.sub(r"\s*SQLSTATE: \w+$", "", line.strip()) for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("at ", "..."))]
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    if starts:  # a Python worker's error: the last line of its traceback
        body = [line for line in lines[starts[-1] + 1:] if not line.startswith(("File ", "^", "~"))]
        errors = [line for line in body if re.match(r"[A-Za-z_][\w.]*(: |(Error|Exception)$)", line)]
        if errors:
            return errors[-1]
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):  # py4j's wrapper
        lines = [lines[1].lstrip(": "), *lines[2:]]
    if not lines:
        return type(exc).__name__
    failed = re.search(r"most recent failure: .*?\): (.+)", lines[0])  # a task's own error
    return failed.group(1) if failed else lines[0]


def _spark_exceptions() -> tuple:
    from pyspark.errors import PySparkException

    kinds = [PySparkException]
    try:
        from py4j.protocol import Py4JError  # classic Spark: a JVM error PySpark did not convert

        kinds.append(Py4JError)
    except ImportError:
        pass
    return tuple(kinds)


@contextmanager
def spark_errors(doing: str):
    """Turn an error Spark raises while `doing` into one AedetectError line (the CLI prints it
    without a traceback); aedetect's own errors pass unchanged."""
    try:
        yield
    except AedetectError:
        raise
    except _spark_exceptions() as exc:
        raise AedetectError(f"Spark could not {doing}: {error_line(exc)}") from None


def output_exists(spark, path: str) -> bool:
    """Whether `path` exists where `spark` writes: through Hadoop's file system on classic Spark;
    under Spark Connect (no JVM here) by asking the server to resolve it as a file source."""
    connect = type(spark).__module__.startswith("pyspark.sql.connect")
    jsc = None if connect else getattr(spark, "_jsc", None)
    if jsc is not None:
        hadoop = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
        return bool(hadoop.getFileSystem(jsc.hadoopConfiguration()).exists(hadoop))
    try:
        spark.read.format("binaryFile").load(path).schema  # noqa: B018 - the server resolves the path
    except _spark_exceptions() as exc:
        if _condition(exc) == "PATH_NOT_FOUND":
            return False
        raise
    return True


def write_parquet(df, out: str | os.PathLike, *, overwrite: bool, option: str = "--overwrite") -> None:
    """Write `df` as Parquet at `out` with Spark's committer, refusing an existing `out` unless
    `overwrite`. Spark Connect has no "errorifexists" mode, so the check is ours (`output_exists`)
    and the write's mode is "error" (both kinds of session know it) or "overwrite"."""
    out = str(out)
    refused = OutputError(f"{out} already exists; pass {option} to replace it")
    with spark_errors(f"check {out}"):
        if not overwrite and output_exists(df.sparkSession, out):
            raise refused
    with spark_errors(f"write {out}"):
        try:
            df.write.mode("overwrite" if overwrite else "error").parquet(out)
        except _spark_exceptions() as exc:
            if _condition(exc) == "PATH_ALREADY_EXISTS":  # written there since the check
                raise refused from None
            raise


_checked: dict[tuple, tuple] = {}


def check_workers(spark, label_aware: bool = False, keras: bool = False) -> dict:
    """Import on one of `spark`'s Python workers what scoring needs (`spark_worker.IMPORTS`,
    and `LABEL_AWARE_IMPORTS` for a `label_aware` model, TensorFlow too for one whose head
    reads Keras' code layer: `keras`), once per session, with a plain
    (pickled, not Arrow) UDF that needs nothing but PySpark on the worker. Returns the worker's
    Python, its version and the versions it found; raises an AedetectError of one line naming
    the Python, what it lacks and how to fix it."""
    from pyspark.sql import functions as F

    from aedetect import __version__

    keras = keras and label_aware
    key = (id(spark), label_aware, keras)
    if key in _checked:
        return _checked[key][1]
    imports = (worker.IMPORTS + (worker.LABEL_AWARE_IMPORTS if label_aware else ())
               + (("tensorflow",) if keras else ()))

    def probe(_):  # nested: cloudpickle ships it by value, so a worker without aedetect runs it
        import importlib
        import json
        import sys

        report = {"python": sys.executable, "version": sys.version.split()[0], "modules": {},
                  "missing": [], "errors": []}
        for name in imports:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                report["missing"].append(exc.name or name)
            except BaseException as exc:  # noqa: BLE001 - reported, whatever it is
                report["errors"].append(" ".join(f"{name}: {type(exc).__name__}: {exc}".split()))
            else:
                report["modules"][name] = getattr(module, "__version__", None)
        return json.dumps(report)

    fix = ("install aedetect[spark] in the Python the workers run (spark.pyspark.python or "
           "PYSPARK_PYTHON), or ship the package with --py-files / spark.submit.pyFiles (a zip of the "
           "aedetect folder; numpy, pandas, pyarrow and pydantic must be installed there)")
    if keras:
        fix = ("this label-aware model's head reads the network's code layer as Keras computed it "
               "(a folder trained before aedetect wrote it in NumPy), so its workers need the train "
               "extra: install aedetect[spark,train] in the Python they run (spark.pyspark.python or "
               "PYSPARK_PYTHON), or retrain the model with this aedetect")
    elif label_aware:
        fix = ("a label-aware model's supervised head needs scikit-learn and skops on the workers "
               "(aedetect's default install): install aedetect[spark] in the Python they run "
               "(spark.pyspark.python or PYSPARK_PYTHON)")
    try:
        udf = F.udf(probe, "string", useArrow=False)
        report = json.loads(spark.range(1).select(udf(F.col("id"))).first()[0])
    except _spark_exceptions() as exc:
        raise AedetectError(f"Spark's workers could not run a Python task ({error_line(exc)}); they need "
                            f"Python {sys.version_info.major}.{sys.version_info.minor} with aedetect: {fix}") from None
    where = f"the Spark workers' Python ({report['python']}, {report['version']})"
    if report["missing"] or report["errors"]:
        missing = list(dict.fromkeys(report["missing"]))
        problems = [f"No module named {', '.join(map(repr, missing))}"] if missing else []
        raise AedetectError(f"{where} cannot import what scoring needs: {'; '.join(problems + report['errors'])}; "
                            f"{fix}")
    theirs = report["modules"].get("aedetect")
    if theirs != __version__:
        raise AedetectError(f"{where} has aedetect {theirs}, this Python aedetect {__version__}: install the "
                            "same version on the workers (or ship it with --py-files / spark.submit.pyFiles)")
    _checked[key] = (spark, report)  # holding the session keeps its id from being reused
    return report


# -- shipping the model -----------------------------------------------------------------------
_shipped: dict[tuple, tuple] = {}
_archive_dir: list[Path] = []


def _archive_dir_path() -> Path:
    """This process's folder of archives to ship, removed at exit."""
    if not _archive_dir:
        tmp = Path(tempfile.mkdtemp(prefix="aedetect-spark-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _archive_dir.append(tmp)
    return _archive_dir[0]


def _archive(model_dir: Path, digest: str) -> Path:
    path = _archive_dir_path() / f"aedetect-model-{digest[:16]}.zip"
    if not path.exists():
        part = path.with_suffix(".part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(model_dir.iterdir()):
                if f.is_file():
                    z.write(f, f.name)
        os.replace(part, path)
    return path


def prepare_model(model_dir: str | os.PathLike) -> ShippedModel:
    """Verify the model folder here (every file against the manifest) and describe it. A
    label-aware folder is scored with its supervised head: its workers need what `aedetect
    score` needs for it (scikit-learn and skops; TensorFlow only for a head that reads Keras'
    code layer: `needs_keras`); its entity history (`history_features`) needs neither."""
    from aedetect.model.preprocessing import Preprocessor
    from aedetect.serving.runtime import needs_tensorflow
    from aedetect.store.folder import HYBRID_FILE, open_folder

    folder = open_folder(model_dir)  # refuses a tampered or incomplete folder
    manifest = folder.manifest
    label_aware = HYBRID_FILE in manifest.files
    digest = manifest_digest(model_dir)
    pre = Preprocessor.from_config(manifest.preprocessing)
    schema = manifest.detector_params.get("schema")
    kinds = tuple(pre.input_kinds) if schema is not None else ()
    return ShippedModel(f"aedetect-model-{digest[:16]}.zip", digest,
                        tuple(manifest.input_schema.feature_names), tuple(pre.output_names), kinds,
                        _history_inputs(schema), label_aware=label_aware,
                        needs_keras=needs_tensorflow(folder))


def _history_inputs(schema) -> worker.HistoryInputs | None:
    from aedetect.data.schema import DatasetSchema

    if schema is None or schema.get("history") is None:
        return None
    schema = DatasetSchema.model_validate(schema)
    h = schema.history
    kinds = ["datetime" if schema.column(schema.time).type == "datetime" else "number"]
    kinds += ["category"] * len(h.entities) + (["number"] if h.amount else [])
    names = h.feature_names
    per = len(names) // len(h.entities)  # feature_names lists the entities' features in turn
    return worker.HistoryInputs(schema.time, tuple(h.entities), h.amount, tuple(kinds),  # roles: distinct
                                tuple(tuple(names[i * per:(i + 1) * per]) for i in range(len(h.entities))),
                                schema.label if h.label_delay is not None else None)


def ship_model(spark, model_dir: str | os.PathLike, shipped: ShippedModel | None = None, *,
               scoring: bool = True) -> ShippedModel:
    """Add the verified model folder to `spark` as an archive (once per session), after
    checking that its workers can import what scoring needs (`check_workers`; a label-aware
    model's head too, unless only its history is computed: `scoring` False)."""
    shipped = shipped or prepare_model(model_dir)
    check_workers(spark, label_aware=scoring and shipped.label_aware, keras=shipped.needs_keras)
    key = (id(spark), shipped.digest)
    if key not in _shipped:
        spark.addArtifacts(str(_archive(Path(model_dir), shipped.digest)), archive=True)
        _shipped[key] = (spark, shipped)  # holding the session keeps its id from being reused
    return shipped


# -- scoring ----------------------------------------------------------------------------------
def _spark_type(arrow_type):
    from pyspark.sql import types as T

    return {"double": T.DoubleType(), "int8": T.ByteType(), "string": T.StringType()}[str(arrow_type)]


def output_schema(df_schema, id_columns, top_k: int):
    from pyspark.sql import types as T

    fields = [df_schema[c] for c in id_columns]
    fields += [T.StructField(name, _spark_type(t), True) for name, t in output_columns(top_k)]
    return T.StructType(fields)


def _check_args(top_k: int) -> None:
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0; got {top_k}")


def score(df, model_dir: str | os.PathLike, *, id_columns=(), top_k: int = 3,
          history_state: str | os.PathLike | None = None):
    """Score a Spark DataFrame: the id columns, `score`, `flag` (1 = above the threshold), the
    `top_k` contributing features with their contributions, and `reason` (why a row has a null
    score; null for scored rows). Lazy, like any DataFrame transformation. `history_state`: a
    model with entity history continues from this state file (`aedetect score --history-state`
    writes one) instead of the model's own."""
    _pyspark()
    _check_args(top_k)
    id_columns = tuple(id_columns)
    shipped = prepare_model(model_dir)
    check_columns(df.schema, shipped, id_columns)
    ship_model(df.sparkSession, model_dir, shipped)
    shipped = ship_history_state(df.sparkSession, shipped, model_dir, history_state)
    return score_shipped(df, shipped, id_columns, top_k)


def ship_history_state(spark, shipped: ShippedModel, model_dir, path) -> ShippedModel:
    """`shipped` continuing from the history state file `path` (checked here against the model's
    schema, then added to `spark` as an archive whose sha256 each worker checks); `shipped`
    itself when `path` is None."""
    if path is None:
        return shipped
    from dataclasses import replace

    from aedetect.data.history import read_state

    if shipped.history is None:
        raise AedetectError(f"--history-state: {model_dir} has no entity history (train it with --entity-columns)")
    read_state(path, list(shipped.history.entities))  # a clear error here, not on a worker
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    name = f"aedetect-history-{digest[:16]}.zip"
    key = (id(spark), "history", digest)
    if key not in _shipped:
        archive = _archive_dir_path() / name
        if not archive.exists():
            part = archive.with_suffix(".part")
            with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("history.parquet", data)
            os.replace(part, archive)
        spark.addArtifacts(str(archive), archive=True)
        _shipped[key] = (spark, shipped)
    return replace(shipped, history_state=name, history_state_digest=digest)


def score_shipped(df, shipped: ShippedModel, id_columns=(), top_k: int = 3):
    """`score` for a model already shipped (and its schema checked)."""
    id_columns = tuple(id_columns)
    columns = list(dict.fromkeys([*id_columns, *shipped.features]))
    schema = output_schema(df.schema, id_columns, top_k)
    if shipped.history is not None:
        derived = {n for names in shipped.history.features for n in names}
        read = dict.fromkeys([*id_columns, *shipped.features, *shipped.history.columns])
        df, names = _history_frame(df, shipped, [c for c in read if c not in derived])
        inner = {name: n for n, name in names.items()}
        if shipped.label_aware:  # the head reads the label-based risk beside the autoencoder's columns
            columns += [n for names_ in shipped.history.features for n in names_ if n not in columns]
        fn = partial(score_batches, shipped=shipped, id_columns=id_columns, top_k=top_k, names=names)
        return df.select(*[inner[c] for c in columns]).mapInArrow(fn, schema)
    fn = partial(score_batches, shipped=shipped, id_columns=id_columns, top_k=top_k)
    return df.select(*map(_col, columns)).mapInArrow(fn, schema)


def _col(name: str):
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")  # a name, even with a dot (card_id.count_1h)


def score_udf(df, model_dir: str | os.PathLike, *, top_k: int = 3, batch_size: int = 10_000):
    """The same scoring as a column expression (a struct of the scoring columns) through
    `predict_batch_udf`: `df.withColumn("aedetect", score_udf(df, "model/"))`. `df` is used
    only to check its schema and find its session."""
    _pyspark()
    _check_args(top_k)
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F

    from aedetect.serving.spark_worker import make_predict_fn

    shipped = prepare_model(model_dir)
    if shipped.history is not None:
        raise AedetectError("score_udf scores each batch alone; this model's entity history "
                            "features need each row's past: use aedetect.serving.spark.score")
    if shipped.input_kinds and set(shipped.input_kinds) != {"number"}:
        raise AedetectError("score_udf passes numbers only (predict_batch_udf); this model reads "
                            "categories or datetimes: use aedetect.serving.spark.score")
    check_schema(df.schema, shipped.features)
    ship_model(df.sparkSession, model_dir, shipped)
    schema = output_schema(df.schema, (), top_k)
    udf = predict_batch_udf(partial(make_predict_fn, shipped, top_k), return_type=schema,
                            batch_size=batch_size)
    return udf(F.struct(*[F.col(c) for c in shipped.features]))


# -- entity history ---------------------------------------------------------------------------
def history_features(df, model_dir: str | os.PathLike, *, history_state: str | os.PathLike | None = None):
    """`df` with the model's entity history columns added (`card_id.count_1h`, ...): those of
    `aedetect.data.history.add_history` on the whole DataFrame after the model's state (or the
    state file `history_state`). Lazy; the rows come back in no particular order (see
    `with_history`)."""
    _pyspark()
    shipped = prepare_model(model_dir)
    if shipped.history is None:
        raise AedetectError(f"{model_dir}: the model has no entity history features (it was trained "
                            "without entity columns)")
    check_columns(df.schema, shipped)
    ship_model(df.sparkSession, model_dir, shipped, scoring=False)
    return with_history(df, ship_history_state(df.sparkSession, shipped, model_dir, history_state))


def with_history(df, shipped: ShippedModel, columns=None):
    """`columns` of `df` (default: all) and the history features of a shipped model.

    The features of one entity depend only on that entity's rows (its new-counterparty flags
    too: a pair's rows are the entity's rows), so for each entity column the rows are grouped by
    its value and each group computed by `aedetect.data.history.compute` in one Python task,
    after the model's state rows of that value (the state travels with the model archive), with
    the rows in their DataFrame order (`monotonically_increasing_id`: ties in time go by it).
    As `add_history` on the whole table does, the state counts only before the first time of the
    rows with history: a small aggregate over the time column, joined to every row. Costs: one
    shuffle of the rows by each entity column, one more read of the time, entity and amount
    columns, and each entity value's rows held in one task's memory."""
    from pyspark.sql import functions as F

    out, names = _history_frame(df, shipped, df.columns if columns is None else columns)
    return out.select(*[F.col(n).alias(name) for n, name in names.items()])


def _history_frame(df, shipped: ShippedModel, columns) -> tuple:
    """`with_history` with every column under a plain name of its position (Spark reads a dot
    in a column name as a field of a struct, and mapInArrow and applyInArrow name their columns
    unquoted), and {plain name: column name}."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    h = shipped.history
    label = h.label if h.label in df.columns else None  # label-based risk: the labels known by now
    columns = list(dict.fromkeys([*columns, *h.columns, *([label] if label else [])]))
    inner = {c: f"_aedetect_c{j}" for j, c in enumerate(columns)}
    names = tuple(inner[c] for c in h.columns)
    helpers = [T.StructField(worker.TIME, T.DoubleType(), True)]
    helpers += [T.StructField(worker.entity_column(i), T.StringType(), True) for i in range(len(h.entities))]
    if h.amount:
        helpers.append(T.StructField(worker.AMOUNT, T.DoubleType(), True))
    base = df.select(*[_col(c).alias(inner[c]) for c in columns])
    base = base.withColumn(worker.ROW, F.monotonically_increasing_id())
    labels = [T.StructField(worker.LABEL, T.DoubleType(), True)] if label else []
    rows = base.mapInArrow(partial(worker.history_inputs, shipped=shipped, names=names, keep=True,
                                   label=inner[label] if label else None),
                           T.StructType([*base.schema.fields, *helpers, *labels]))
    inputs = df.select(*[_col(c).alias(inner[c]) for c in h.columns]).mapInArrow(
        partial(worker.history_inputs, shipped=shipped, names=names, keep=False), T.StructType(helpers))
    usable = reduce(lambda a, b: a & b, [F.col(f.name).isNotNull() for f in helpers])
    out = rows.crossJoin(inputs.where(usable).agg(F.min(worker.TIME).alias(worker.START)))
    features = {}
    for i, entity in enumerate(h.entities):
        outputs = tuple(f"_aedetect_h{len(features) + k}" for k in range(len(h.features[i])))
        features.update(zip(outputs, h.features[i], strict=True))
        fields = [*out.schema.fields, *[T.StructField(n, T.DoubleType(), True) for n in outputs]]
        out = out.groupBy(worker.entity_column(i)).applyInArrow(
            partial(worker.entity_history, shipped=shipped, entity=entity, outputs=outputs),
            T.StructType(fields))
    names = {**{inner[c]: c for c in columns}, **features}
    return out.select(*names), names


# -- sessions and files (the CLI) -------------------------------------------------------------
def session(master: str | None = None, remote: str | None = None, app_name: str = "aedetect"):
    """A SparkSession: `remote` (sc://host:port) through Spark Connect, else classic `master`."""
    _pyspark()
    from pyspark.sql import SparkSession

    if master and remote:
        raise AedetectError("give --master or --remote, not both")
    builder = SparkSession.builder.appName(app_name)
    if (remote or master or "local").startswith("local"):
        # Local workers run this Python, where aedetect is installed; on a cluster the
        # workers' Python (spark.pyspark.python) needs aedetect installed (docs/scale.md).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if remote:
        with spark_errors(f"connect to {remote}"):
            return builder.remote(remote).getOrCreate()
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise AedetectError("Spark needs Java 17 or newer: install it (e.g. apt-get install "
                            "openjdk-17-jre-headless) or set JAVA_HOME, or use --remote sc://...")
    with spark_errors(f"start on {master or 'local[*]'}"):
        return builder.master(master or "local[*]").getOrCreate()


def score_parquet(spark, model_dir, data: str, out: str, *, id_columns=(), top_k: int = 3,
                  overwrite: bool = False, history_state: str | os.PathLike | None = None) -> dict:
    """Read Parquet at `data`, score it and write Parquet to `out` with Spark's committer: the
    output is committed (with `_SUCCESS`) only when every task succeeded, so a failed job
    leaves nothing committed. Returns row, flagged and unscored counts read from the output."""
    from pyspark.sql import functions as F

    try:
        df = spark.read.parquet(data)
        df.schema  # noqa: B018 - Spark Connect resolves the path only when asked
    except Exception as exc:  # noqa: BLE001 - Spark raises its own analysis errors
        raise DataError(f"{data}: cannot read as Parquet: {error_line(exc)}") from None
    with spark_errors(f"score {data}"):
        scored = score(df, model_dir, id_columns=id_columns, top_k=top_k, history_state=history_state)
    write_parquet(scored, out, overwrite=overwrite)
    with spark_errors(f"read back {out}"):
        row = spark.read.parquet(out).agg(
            F.count(F.lit(1)).alias("rows"), F.sum(F.col("flag").cast("long")).alias("flagged"),
            F.sum(F.col("score").isNull().cast("long")).alias("unscored")).collect()[0]
    return {"rows": int(row["rows"]), "flagged": int(row["flagged"] or 0),
            "unscored": int(row["unscored"] or 0)}


# -- training samples -------------------------------------------------------------------------
def sample_normals(df, n: int, seed: int, out: str | os.PathLike, *, label: str | None,
                   time: str | None = None, time_window=None, columns=None,
                   rows_per_shard: int = 50_000, overwrite: bool = False) -> int:
    """Write a seeded sample of `n` normal rows (0 in the `label` column; every row when `label`
    is None or not a column) as Parquet shards of about `rows_per_shard` rows, for `aedetect
    train --data out/`.

    `time_window=(start, end)` keeps rows with start <= `time` < end, e.g. the latest weeks.
    The same data, seed and partitioning give the same sample. Returns the rows written.
    """
    _pyspark()
    from pyspark.sql import functions as F

    if n < 1 or rows_per_shard < 1:
        raise ValueError(f"n and rows_per_shard must be >= 1; got {n}, {rows_per_shard}")
    if label and label in df.columns:
        df = df.filter(F.col(label) == 0)
    if time_window is not None:
        if time is None or time not in df.columns:
            raise DataError(f"time_window needs the time column (time={time!r}); the DataFrame "
                            f"has {df.columns}")
        start, end = time_window
        df = df.filter((F.col(time) >= start) & (F.col(time) < end))
    if columns is not None:
        df = df.select(*columns)
    total = df.count()
    if total == 0:
        raise DataError("no normal rows to sample" + (f" in the time window {time_window}"
                                                      if time_window is not None else ""))
    # A Bernoulli sample a little larger than n, then the n rows with the smallest seeded key:
    # exact size and the same rows for the same seed, without sorting the whole lake.
    fraction = min(1.0, (n * 1.1 + 100) / total)
    sample = df.sample(withReplacement=False, fraction=fraction, seed=seed)
    sample = sample.withColumn("_key", F.rand(seed)).orderBy("_key").limit(n).drop("_key")
    shards = max(1, -(-min(n, total) // rows_per_shard))
    write_parquet(sample.repartition(shards), out, overwrite=overwrite, option="overwrite=True")
    return int(df.sparkSession.read.parquet(str(out)).count())
