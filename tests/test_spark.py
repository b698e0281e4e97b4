"""Spark scoring in a real local[2] session against the single-process scorer, on generated data."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions

pytest.importorskip("pyspark", reason="needs the spark extra: pip install -e '.[spark]'")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java 17+ (no `java` on PATH and no JAVA_HOME)", allow_module_level=True)

FEATURES = list(CREDITCARD.features)
TOP = ["top1_feature", "top1_contribution", "top2_feature", "top2_contribution"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers run this Python, where aedetect is
    session = (SparkSession.builder.master("local[2]").appName("aedetect-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "700")
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """3,000 generated rows with an id column, as Parquet."""
    d = tmp_path_factory.mktemp("lake")
    df = generate_transactions(3000, 0.02, seed=3).drop(columns="Class")
    df.insert(0, "txn_id", np.arange(len(df), dtype="int64") + 1000)
    df.to_parquet(d / "data.parquet")
    return d, df


@pytest.fixture(scope="module")
def reference(lake, model_dir):
    """`aedetect score` (the single-process scorer) on the same file."""
    from aedetect.model.detector import load_detector
    from aedetect.serving.batch import score_file

    d, _ = lake
    score_file(load_detector(model_dir), d / "data.parquet", d / "ref.parquet",
               id_columns=["txn_id"], top_k=2)
    ref = pd.read_parquet(d / "ref.parquet").set_index("txn_id")
    ref.attrs["threshold"] = json.loads((model_dir / "manifest.json").read_text())["threshold"]["value"]
    return ref


def assert_same_scores(got: pd.DataFrame, ref: pd.DataFrame, threshold: float):
    """Scores within 5e-6 of the larger of the score and the threshold, flags identical.

    The network runs in float32, whose rounding depends on the batch shape and thread count
    (the NumPy runtime scores blocks on a thread per core): the same bound as the runtime's own
    parity with Keras (tests/test_runtime.py); the single-process scorer itself moves by about
    5e-7 relative between chunk sizes.
    """
    got = got.set_index("txn_id").loc[ref.index]
    scale = np.maximum(np.abs(ref["score"].to_numpy()), threshold)
    assert (np.abs(got["score"].to_numpy() - ref["score"].to_numpy()) <= 5e-6 * scale).all()
    assert (got["flag"].to_numpy() == ref["flag"].to_numpy()).all()
    assert (got["top1_feature"] == ref["top1_feature"]).all()
    assert got["reason"].isna().all()


def test_map_in_arrow_and_udf_equal_the_single_process_scorer(spark, lake, reference, model_dir):
    from aedetect.serving.spark import score, score_udf

    d, _ = lake
    df = spark.read.parquet(str(d / "data.parquet")).repartition(3)
    got = score(df, model_dir, id_columns=["txn_id"], top_k=2).toPandas()
    assert list(got.columns) == ["txn_id", "score", "flag", *TOP, "reason"]
    assert len(got) == len(reference)
    assert_same_scores(got, reference, reference.attrs["threshold"])

    s = df.select("txn_id", score_udf(df, model_dir, top_k=2).alias("s")).select("txn_id", "s.*")
    assert_same_scores(s.toPandas(), reference, reference.attrs["threshold"])


def test_bad_rows_get_null_scores_with_reasons(spark, lake, reference, model_dir):
    from aedetect.serving.spark import score, score_udf

    _, df = lake
    part = df.head(40).copy()
    part["V3"] = part["V3"].map(repr).astype(object)  # a text column, as read from raw CSV
    part.loc[0, "V3"] = "abc"
    part.loc[1, "V3"] = None
    part["Amount"] = part["Amount"].astype(object)
    part.loc[2, "Amount"] = float("nan")
    part.loc[3, "Amount"] = float("inf")
    part.loc[4, "Amount"] = None
    part["Amount"] = part["Amount"].astype("float64")
    sdf = spark.createDataFrame(part)
    for got in (score(sdf, model_dir, id_columns=["txn_id"], top_k=2).toPandas(),
                sdf.select("txn_id", score_udf(sdf, model_dir, top_k=2).alias("s"))
                .select("txn_id", "s.*").toPandas()):
        got = got.set_index("txn_id").loc[part["txn_id"]]
        bad = got.iloc[:5]
        assert bad["score"].isna().all() and bad["flag"].isna().all()
        reasons = list(bad["reason"])
        assert "'V3'" in reasons[0] and "abc" in reasons[0]
        assert all(r and ("'V3'" in r or "'Amount'" in r) for r in reasons), reasons
        good = got.iloc[5:]
        good = good.reset_index()
        assert_same_scores(good, reference.loc[good["txn_id"]], reference.attrs["threshold"])


@pytest.mark.parametrize("change, message", [
    (lambda df: df.withColumnRenamed("Amount", "amount"), "'amount' differs in case.*'Amount'"),
    (lambda df: df.drop("V7"), "missing column 'V7'"),
    (lambda df: df.withColumn("V2", df["V2"] > 0), "column 'V2' has type boolean"),
    (lambda df: df, "missing column 'account'"),
])
def test_schema_problems_fail_on_the_driver_naming_the_column(spark, lake, model_dir, change, message):
    from aedetect.errors import DataError
    from aedetect.serving.spark import score

    d, _ = lake
    df = change(spark.read.parquet(str(d / "data.parquet")))
    ids = ["account"] if "account" in message else ["txn_id"]
    with pytest.raises(DataError, match=message):
        score(df, model_dir, id_columns=ids)


def test_model_loads_once_per_worker_across_jobs(spark, lake, model_dir):
    from aedetect.serving.spark import score

    d, _ = lake
    df = spark.read.parquet(str(d / "data.parquet")).repartition(4)
    for _ in range(2):
        assert score(df, model_dir, id_columns=["txn_id"]).count() == 3000

    def probe(batches):
        import pyarrow as pa

        from aedetect.serving.spark_worker import worker_stats

        for _ in batches:
            s = worker_stats()
            yield pa.RecordBatch.from_pydict({"pid": [s["pid"]], "loads": [s["loads"]]})

    stats = spark.range(0, 64, numPartitions=8).mapInArrow(probe, "pid long, loads long").toPandas()
    per_worker = stats.groupby("pid")["loads"].max()
    assert (per_worker <= 1).all(), per_worker
    assert (per_worker == 1).any(), per_worker


def test_cli_writes_parquet_the_spark_way(spark, lake, reference, model_dir, tmp_path):
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    d, _ = lake
    out = tmp_path / "scored"
    args = ["spark", "score", "--model", str(model_dir), "--data", str(d / "data.parquet"),
            "--out", str(out), "--master", "local[2]", "--id-columns", "txn_id", "--top-k", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "_SUCCESS").exists()
    assert_same_scores(pd.read_parquet(out), reference, reference.attrs["threshold"])
    again = CliRunner().invoke(app, args)  # an existing output is never replaced unasked
    assert again.exit_code != 0 and "already exists" in str(again.exception or again.output)
    again = CliRunner().invoke(app, [*args, "--overwrite"])  # a folder aedetect wrote: replaced
    assert again.exit_code == 0, again.output
    (out / "notes.txt").write_text("mine")  # Spark's overwrite would delete it: refused
    again = CliRunner().invoke(app, [*args, "--overwrite"])
    assert again.exit_code != 0 and "notes.txt" in str(again.exception or again.output)
    assert (out / "notes.txt").exists()


def test_sample_normals_writes_seeded_shards(spark, tmp_path):
    from aedetect.serving.spark import sample_normals

    df = spark.createDataFrame(generate_transactions(2000, 0.05, seed=2))
    a, b = tmp_path / "a", tmp_path / "b"
    cols = {"label": "Class", "time": "Time"}
    assert sample_normals(df, 500, 7, a, **cols, rows_per_shard=200, time_window=(0, 10**9)) == 500
    sample_normals(df, 500, 7, b, **cols, rows_per_shard=200, time_window=(0, 10**9))
    ra, rb = pd.read_parquet(a), pd.read_parquet(b)
    assert len(list(a.glob("part-*.parquet"))) == 3
    assert (ra["Class"] == 0).all()
    key = ["Time", "V1"]
    pd.testing.assert_frame_equal(ra.sort_values(key).reset_index(drop=True),
                                  rb.sort_values(key).reset_index(drop=True))


def test_tampered_model_is_refused_on_driver_and_worker(spark, lake, model_dir, tmp_path):
    from aedetect.errors import ArtifactError
    from aedetect.serving.spark import score, score_shipped, ship_model

    d, _ = lake
    df = spark.read.parquet(str(d / "data.parquet"))
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["threshold"]["value"] = 0.0
    (bad / "manifest.json").write_text(json.dumps(manifest))
    manifest["files"]["model.keras"] = "0" * 64  # hashes no longer match the files
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="sha256"):
        score(df, bad, id_columns=["txn_id"])

    # A worker that finds another folder than the one the driver checked refuses it, the job
    # fails, and Spark's committer leaves no output behind.
    from dataclasses import replace

    shipped = replace(ship_model(spark, model_dir), digest="f" * 64)
    out = tmp_path / "scored"
    with pytest.raises(Exception, match="does not match the model the driver checked"):
        score_shipped(df, shipped, ["txn_id"]).write.parquet(str(out))
    assert not (out / "_SUCCESS").exists() and not list(out.glob("part-*"))


@pytest.mark.slow
def test_spark_connect_scores_equal_the_single_process_scorer(lake, reference, model_dir, tmp_path):
    """Through a local Spark Connect server (no SparkContext on the client): both paths."""
    d, _ = lake
    code = f"""
from pyspark.sql import SparkSession
from aedetect.serving.spark import score, score_udf
spark = SparkSession.builder.remote("local[2]").getOrCreate()
assert not hasattr(spark, "_jsc") or spark._jsc is None
df = spark.read.parquet({str(d / 'data.parquet')!r}).repartition(3)
score(df, {str(model_dir)!r}, id_columns=["txn_id"], top_k=2).write.parquet({str(tmp_path / 'a')!r})
(df.select("txn_id", score_udf(df, {str(model_dir)!r}, top_k=2).alias("s")).select("txn_id", "s.*")
   .write.parquet({str(tmp_path / 'b')!r}))
print(type(spark).__module__)
spark.stop()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYSPARK_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pyspark.sql.connect" in proc.stdout
    for part in ("a", "b"):
        assert_same_scores(pd.read_parquet(tmp_path / part), reference, reference.attrs["threshold"])


def test_a_model_with_categories_dates_and_gaps_scores_like_the_batch_scorer(spark, tmp_path):
    """A dataset-schema model: categories arrive as strings, timestamps as Spark timestamps,
    gaps as nulls; scores equal `aedetect score`'s on the same file, an unseen category scores."""
    from aedetect.data.generate import generate_transaction_log
    from aedetect.data.infer import infer_schema
    from aedetect.model.detector import load_detector
    from aedetect.serving.batch import score_file
    from aedetect.serving.spark import score
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    table = generate_transaction_log(2000, 0.03, seed=8)
    schema = infer_schema(table)
    det = train_detector(table, TrainConfig(epochs=2, hidden_units=[16, 4, 16], batch_size=64),
                         schema).detector
    model = det.save(tmp_path / "model")
    new = table.drop(columns=["is_fraud", "fraud_kind"]).head(600).copy()
    new["timestamp"] = pd.to_datetime(new["timestamp"])
    new.loc[new.index[0], "merchant_category"] = "spaceflight"
    new.to_parquet(tmp_path / "new.parquet")
    score_file(load_detector(model), tmp_path / "new.parquet", tmp_path / "ref.parquet",
               id_columns=["transaction_id"])
    ref = pd.read_parquet(tmp_path / "ref.parquet").set_index("transaction_id")
    got = score(spark.read.parquet(str(tmp_path / "new.parquet")), model,
                id_columns=["transaction_id"], top_k=1).toPandas().set_index("transaction_id")
    got = got.loc[ref.index]
    assert got["reason"].isna().all()
    scale = np.maximum(np.abs(ref["score"].to_numpy()), det.threshold_)
    assert (np.abs(got["score"].to_numpy() - ref["score"].to_numpy()) <= 5e-6 * scale).all()
    assert (got["flag"].to_numpy() == ref["flag"].to_numpy()).all()
    assert got["top1_feature"].isin(schema.features).all()  # the user's columns, not one-hot features


# -- entity history ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def history_model(tmp_path_factory):
    """A model with card and terminal history trained (CLI) on the first 14 days of a generated
    payments log; the later 6 days as Parquet, and `aedetect score`'s output for them."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.data.generate import generate_payment_log

    d = tmp_path_factory.mktemp("history")
    log = generate_payment_log(n_days=20, n_cards=200, n_terminals=50, seed=0)
    log = log.drop(columns=["is_fraud", "fraud_kind"])
    day = (pd.to_datetime(log["timestamp"]) - pd.to_datetime(log["timestamp"]).min()).dt.days
    log[day < 14].to_csv(d / "first.csv", index=False)
    log.to_parquet(d / "all.parquet", index=False)
    later = log[day >= 14].reset_index(drop=True)
    later.to_parquet(d / "later.parquet", index=False)
    res = CliRunner().invoke(app, ["train", "--data", str(d / "first.csv"), "--out", str(d / "model"),
                                   "--entity-columns", "card_id,terminal_id", "--epochs", "3"])
    assert res.exit_code == 0, res.output + str(res.exception)
    return d, log, later


def _batch_scores(model, data, out, **kw) -> pd.DataFrame:
    from aedetect.serving.batch import score_file
    from aedetect.serving.runtime import load_scorer

    score_file(load_scorer(model), data, out, id_columns=["transaction_id"], top_k=2, **kw)
    return pd.read_parquet(out).set_index("transaction_id")


def test_history_features_and_scores_equal_add_history_and_the_batch_scorer(spark, history_model, tmp_path):
    """Grouped by each entity after the model's state, Spark's history features are those of
    `add_history` on the whole table (1e-9), and its scores those of `aedetect score`."""
    from aedetect.data.history import add_history
    from aedetect.errors import AedetectError, DataError
    from aedetect.serving.runtime import load_scorer
    from aedetect.serving.spark import history_features, score, score_udf

    d, log, later = history_model
    model = d / "model"
    scorer = load_scorer(model)
    names = scorer.schema.history_features
    for table, path in ((later, d / "later.parquet"), (log, d / "all.parquet")):
        # the later days continue from the state; the whole log (training rows again) starts afresh
        want = add_history(table, scorer.schema, scorer.history_state_)[0].set_index("transaction_id")
        got = history_features(spark.read.parquet(str(path)), model).toPandas().set_index("transaction_id")
        assert list(got.columns) == [*table.columns.drop("transaction_id"), *names]
        got = got.loc[want.index]
        np.testing.assert_allclose(got[names].to_numpy(), want[names].to_numpy(), rtol=0, atol=1e-9)
        pd.testing.assert_frame_equal(got[list(table.columns[1:])], want[list(table.columns[1:])],
                                      check_dtype=False)
        if table is later:  # the model's state counts: without it the later days' features differ
            fresh = add_history(table, scorer.schema)[0].set_index("transaction_id")[names]
            assert not np.allclose(fresh.to_numpy(), want[names].to_numpy())

    ref = _batch_scores(model, d / "later.parquet", tmp_path / "ref.parquet")
    out = score(spark.read.parquet(str(d / "later.parquet")), model, id_columns=["transaction_id"], top_k=2)
    got = out.toPandas().set_index("transaction_id").loc[ref.index]
    np.testing.assert_allclose(got["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-6)
    assert (got["flag"].to_numpy() == ref["flag"].to_numpy()).all() and got["reason"].isna().all()
    assert (got["top1_feature"] == ref["top1_feature"]).all()

    df = spark.read.parquet(str(d / "later.parquet"))
    with pytest.raises(AedetectError, match="use aedetect.serving.spark.score"):
        score_udf(df, model)
    with pytest.raises(DataError, match="missing column 'terminal_id' .*history"):
        score(df.drop("terminal_id"), model)


def test_a_row_without_entity_value_is_a_bad_row_with_the_batch_scorers_reason(spark, history_model, tmp_path):
    from aedetect.data.history import no_history_reason
    from aedetect.serving.batch import bad_rows_path
    from aedetect.serving.runtime import load_scorer
    from aedetect.serving.spark import score

    d, _, later = history_model
    part = later.head(300).copy()
    part.loc[3, "card_id"] = ""  # empty: no card, so no history
    part.loc[5, "terminal_id"] = None
    part.to_parquet(tmp_path / "part.parquet", index=False)
    ref = _batch_scores(d / "model", tmp_path / "part.parquet", tmp_path / "ref.parquet", on_bad_rows="skip")
    side = pd.read_csv(bad_rows_path(tmp_path / "ref.parquet"))
    got = score(spark.read.parquet(str(tmp_path / "part.parquet")), d / "model",
                id_columns=["transaction_id"], top_k=2).toPandas().set_index("transaction_id")
    bad = got.loc[part["transaction_id"].iloc[[3, 5]]]
    assert bad["score"].isna().all() and bad["flag"].isna().all()
    reason = no_history_reason(load_scorer(d / "model").schema)
    assert reason.startswith("no history") and "'card_id'" in reason
    assert (bad["reason"] == reason).all() and sorted(side["reason"]) == [reason, reason]
    good = got.loc[ref.index]  # the other rows: the batch scorer's scores (the bad rows left out of both)
    np.testing.assert_allclose(good["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-6)
    assert good["reason"].isna().all() and len(got) == len(part)


def test_cli_scores_a_history_model_on_spark(spark, history_model, tmp_path):
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    d, _, _ = history_model
    ref = _batch_scores(d / "model", d / "later.parquet", tmp_path / "ref.parquet")
    out = tmp_path / "scored"
    result = CliRunner().invoke(app, ["spark", "score", "--model", str(d / "model"), "--data",
                                      str(d / "later.parquet"), "--out", str(out), "--master", "local[2]",
                                      "--id-columns", "transaction_id", "--top-k", "2"])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert (out / "_SUCCESS").exists()
    got = pd.read_parquet(out).set_index("transaction_id").loc[ref.index]
    np.testing.assert_allclose(got["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-6)
    assert (got["flag"].to_numpy() == ref["flag"].to_numpy()).all() and got["reason"].isna().all()
