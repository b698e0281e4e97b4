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


def workers_stats(spark) -> pd.DataFrame:
    """`spark_worker.worker_stats()` of the Python workers that run 8 small tasks: pid, models
    loaded, TensorFlow imported."""
    def probe(batches):
        import pyarrow as pa

        from aedetect.serving.spark_worker import worker_stats

        for _ in batches:
            s = worker_stats()
            yield pa.RecordBatch.from_pydict({k: [s[k]] for k in ("pid", "loads", "tensorflow")})

    return spark.range(0, 64, numPartitions=8).mapInArrow(probe, "pid long, loads long, tensorflow boolean").toPandas()


def test_model_loads_once_per_worker_across_jobs(spark, lake, model_dir):
    from aedetect.serving.spark import score

    d, _ = lake
    df = spark.read.parquet(str(d / "data.parquet")).repartition(4)
    for _ in range(2):
        assert score(df, model_dir, id_columns=["txn_id"]).count() == 3000

    stats = workers_stats(spark)
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


def _batch_scores(model, data, out, opener=None, **kw) -> pd.DataFrame:
    from aedetect.serving.batch import score_file
    from aedetect.serving.runtime import load_scorer

    score_file((opener or load_scorer)(model), data, out, id_columns=["transaction_id"], top_k=2, **kw)
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


def test_spark_continues_from_the_history_state_batch_scoring_wrote(spark, history_model, tmp_path):
    """Day files scored one after another: `aedetect score --history-state` over the first days
    writes the state, and Spark (the CLI and `history_features`) continues from it as batch
    scoring does, as one file of both would; a file that is no such state stops on the driver."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.data.history import add_history, read_state
    from aedetect.errors import DataError
    from aedetect.serving.runtime import load_scorer
    from aedetect.serving.spark import history_features

    d, _, later = history_model
    day = (pd.to_datetime(later["timestamp"]) - pd.to_datetime(later["timestamp"]).min()).dt.days
    later[day < 3].to_parquet(tmp_path / "a.parquet", index=False)
    rest = later[day >= 3].reset_index(drop=True)
    rest.to_parquet(tmp_path / "b.parquet", index=False)
    state = tmp_path / "state.parquet"
    res = CliRunner().invoke(app, ["score", "--model", str(d / "model"), "--data", str(tmp_path / "a.parquet"),
                                   "--out", str(tmp_path / "a-out.parquet"), "--history-state", str(state)])
    assert res.exit_code == 0, res.output + str(res.exception)
    whole = _batch_scores(d / "model", d / "later.parquet", tmp_path / "whole.parquet")
    out = tmp_path / "scored"
    res = CliRunner().invoke(app, ["spark", "score", "--model", str(d / "model"), "--data", str(tmp_path / "b.parquet"),
                                   "--out", str(out), "--master", "local[2]", "--id-columns", "transaction_id",
                                   "--top-k", "2", "--history-state", str(state)])
    assert res.exit_code == 0, res.output + str(res.exception)
    got = pd.read_parquet(out).set_index("transaction_id")
    want = whole.loc[got.index]
    assert len(got) == len(rest) and got["reason"].isna().all()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-6)

    scorer = load_scorer(d / "model")
    names = scorer.schema.history_features
    carried = read_state(state, scorer.schema.history.entities)
    expect = add_history(rest, scorer.schema, carried)[0].set_index("transaction_id")
    feats = history_features(spark.read.parquet(str(tmp_path / "b.parquet")), d / "model",
                             history_state=state).toPandas().set_index("transaction_id").loc[expect.index]
    np.testing.assert_allclose(feats[names].to_numpy(), expect[names].to_numpy(), rtol=1e-9, atol=1e-9)
    pd.DataFrame({"time": [1.0]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(DataError, match="other.parquet: not a history state of this model"):
        history_features(spark.read.parquet(str(tmp_path / "b.parquet")), d / "model",
                         history_state=tmp_path / "other.parquet")


@pytest.fixture(scope="module")
def label_aware_history(tmp_path_factory):
    """A label-aware model (`train --use-labels`) with card and terminal history and label-based
    risk (a 2-day label delay), trained on the first 20 days of a generated payments log; the
    later 10 days as Parquet, with and without their labels."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.data.generate import generate_payment_log

    tmp_path = tmp_path_factory.mktemp("label-aware")
    log = generate_payment_log(n_days=30, n_cards=200, n_terminals=40, seed=2).drop(columns="fraud_kind")
    day = (pd.to_datetime(log["timestamp"]) - pd.to_datetime(log["timestamp"]).min()).dt.days
    log[day < 20].to_csv(tmp_path / "first.csv", index=False)
    later = log[day >= 20].reset_index(drop=True)
    later.to_parquet(tmp_path / "later.parquet", index=False)
    later.drop(columns="is_fraud").to_parquet(tmp_path / "unlabelled.parquet", index=False)
    model = tmp_path / "model"
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "first.csv"), "--out", str(model),
                                   "--entity-columns", "card_id,terminal_id", "--label-column", "is_fraud",
                                   "--use-labels", "--set", "label_delay_days=2", "--epochs", "2"])
    assert res.exit_code == 0, res.output + str(res.exception)
    return tmp_path, model, later


def test_label_risk_on_spark_reads_the_labels_known_by_then_like_add_history(spark, label_aware_history):
    """A label-aware model (`train --use-labels`) with label-based risk: Spark's history of a
    later file with its labels equals `add_history` (1e-9), labels counting from the delay; the
    same file without its label column equals `add_history` without labels. Spark scores such a
    model with its supervised head as `aedetect score` does, the risk from the file's labels."""
    from aedetect.data.history import add_history
    from aedetect.model.hybrid import open_model
    from aedetect.serving.spark import history_features, score

    tmp_path, model, later = label_aware_history
    scorer = open_model(model).detector
    names = scorer.schema.computed_features
    risk = scorer.schema.label_features
    assert scorer.schema.history.label_delay == 2 * 86400 and "terminal_id.fraud_rate_7d" in risk
    wants = []
    unlabelled = later.drop(columns="is_fraud")
    for path, table in ((tmp_path / "later.parquet", later), (tmp_path / "unlabelled.parquet", unlabelled)):
        want = add_history(table, scorer.schema, scorer.history_state_)[0].set_index("transaction_id")
        got = history_features(spark.read.parquet(str(path)), model).toPandas().set_index("transaction_id")
        np.testing.assert_allclose(got.loc[want.index, names].to_numpy(), want[names].to_numpy(), rtol=0, atol=1e-9)
        wants.append(want[risk].to_numpy())
    ts = pd.to_datetime(later["timestamp"])
    late = (ts >= ts.min() + pd.Timedelta(days=3)).to_numpy()
    assert (wants[0][late] != wants[1][late]).any()  # the later file's own labels count, from the delay on
    batch = _batch_scores(model, tmp_path / "later.parquet", tmp_path / "batch.parquet", opener=open_model)
    got = score(spark.read.parquet(str(tmp_path / "later.parquet")), model, id_columns=["transaction_id"],
                top_k=2).toPandas().set_index("transaction_id").loc[batch.index]
    assert batch["score"].between(0, 1).all()  # the head's fraud probability, not the autoencoder's score
    np.testing.assert_allclose(got["score"].to_numpy(), batch["score"].to_numpy(), rtol=1e-9, atol=1e-12)
    assert (got["flag"].to_numpy() == batch["flag"].to_numpy()).all() and batch["flag"].any()
    assert (got["top1_feature"] == batch["top1_feature"]).all()



def test_a_label_aware_model_scores_like_the_batch_scorer_in_both_apis(spark, tmp_path):
    """A numbers-only label-aware model (`train --use-labels`): `score` and `score_udf` give the
    head's fraud probability of `aedetect score` (1e-9), its flags and first reasons."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.model.hybrid import open_model
    from aedetect.serving.batch import score_file
    from aedetect.serving.spark import prepare_model, score, score_udf

    data = generate_transactions(6000, 0.03, seed=5)
    data.to_csv(tmp_path / "train.csv", index=False)
    later = generate_transactions(1500, 0.03, seed=6).drop(columns="Class")
    later.insert(0, "txn_id", np.arange(len(later), dtype="int64"))
    later.to_parquet(tmp_path / "later.parquet")
    model = tmp_path / "model"
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "train.csv"), "--out", str(model),
                                   "--use-labels", "--epochs", "2", "--hidden-units", "16,6,16"])
    assert res.exit_code == 0, res.output + str(res.exception)
    assert "supervised head" in res.output
    score_file(open_model(model), tmp_path / "later.parquet", tmp_path / "batch.parquet", id_columns=["txn_id"],
               top_k=2)
    want = pd.read_parquet(tmp_path / "batch.parquet").set_index("txn_id")
    assert want["score"].between(0, 1).all() and want["flag"].any()
    df = spark.read.parquet(str(tmp_path / "later.parquet"))
    by_udf = df.select("txn_id", score_udf(df, model, top_k=2).alias("s")).select("txn_id", "s.*")
    for got in (score(df, model, id_columns=["txn_id"], top_k=2).toPandas(), by_udf.toPandas()):
        got = got.set_index("txn_id").loc[want.index]
        np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-9, atol=1e-12)
        assert (got["flag"].to_numpy() == want["flag"].to_numpy()).all()
        assert (got["top1_feature"] == want["top1_feature"]).all() and got["reason"].isna().all()
    # the workers scored it with the NumPy runtime: no TensorFlow there
    assert not prepare_model(model).needs_keras
    stats = workers_stats(spark)
    assert (stats["loads"] > 0).any() and not stats["tensorflow"].any(), stats


@pytest.mark.slow
def test_spark_connect_scores_a_history_model_like_the_batch_scorer(history_model, tmp_path):
    """`aedetect spark score --remote` through a local Spark Connect server on a model with entity
    history: each entity's rows grouped after the model's state, as on classic Spark, give the
    scores and flags of `aedetect score`; with `--history-state` (the state archive shipped to
    the server's workers too), those of the rows after the state, as in one file."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    d, _, later = history_model
    ref = _batch_scores(d / "model", d / "later.parquet", tmp_path / "ref.parquet")
    got = _connect_scores(d / "model", d / "later.parquet", tmp_path / "scored").loc[ref.index]
    np.testing.assert_allclose(got["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-6)
    assert (got["flag"].to_numpy() == ref["flag"].to_numpy()).all() and got["reason"].isna().all()

    day = (pd.to_datetime(later["timestamp"]) - pd.to_datetime(later["timestamp"]).min()).dt.days
    later[day < 3].to_parquet(tmp_path / "a.parquet", index=False)
    later[day >= 3].to_parquet(tmp_path / "b.parquet", index=False)
    state = tmp_path / "state.parquet"
    res = CliRunner().invoke(app, ["score", "--model", str(d / "model"), "--data", str(tmp_path / "a.parquet"),
                                   "--out", str(tmp_path / "a-out.parquet"), "--history-state", str(state)])
    assert res.exit_code == 0, res.output + str(res.exception)
    rest = _connect_scores(d / "model", tmp_path / "b.parquet", tmp_path / "b-scored", "--history-state", state)
    assert len(rest) == int((day >= 3).sum()) and rest["reason"].isna().all()
    np.testing.assert_allclose(rest["score"].to_numpy(), ref.loc[rest.index, "score"].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_spark_connect_scores_a_label_aware_model_like_the_batch_scorer(label_aware_history, tmp_path):
    """`aedetect spark score --remote` through a local Spark Connect server on a label-aware model
    with label-based risk: the server's Python workers load its head and give `aedetect score`'s
    fraud probabilities and flags."""
    from aedetect.model.hybrid import open_model

    d, model, _ = label_aware_history
    ref = _batch_scores(model, d / "later.parquet", tmp_path / "ref.parquet", opener=open_model)
    got = _connect_scores(model, d / "later.parquet", tmp_path / "scored").loc[ref.index]
    assert ref["score"].between(0, 1).all() and ref["flag"].any()
    np.testing.assert_allclose(got["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-9, atol=1e-12)
    assert (got["flag"].to_numpy() == ref["flag"].to_numpy()).all() and got["reason"].isna().all()


def _connect_scores(model, data, out, *extra) -> pd.DataFrame:
    """`aedetect spark score --remote local[2]` (a local Spark Connect server) of `data`, by
    transaction id."""
    proc = subprocess.run([sys.executable, "-m", "aedetect.cli", "spark", "score", "--model", str(model),
                           "--data", str(data), "--out", out.as_uri(), "--remote", "local[2]",
                           "--id-columns", "transaction_id", "--top-k", "2", *map(str, extra)],
                          capture_output=True, text=True,
                          timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYSPARK_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return pd.read_parquet(out).set_index("transaction_id")


# -- writing outputs, Spark Connect and the workers' Python -------------------------------------
def test_an_existing_output_is_refused_by_the_session_without_errorifexists(spark, lake, model_dir, tmp_path):
    """A path the CLI cannot check here (a URL) is checked through the session (Hadoop's file
    system on classic Spark): an existing output is refused with one line naming it and
    --overwrite, nothing is written, and overwrite replaces it. `sample_normals` too."""
    from aedetect.errors import OutputError
    from aedetect.serving.spark import sample_normals, score_parquet

    d, _ = lake
    out = tmp_path / "scored"
    url = out.as_uri()
    assert score_parquet(spark, model_dir, str(d / "data.parquet"), url, id_columns=["txn_id"])["rows"] == 3000
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(OutputError, match=f"^{url} already exists; pass --overwrite to replace it$"):
        score_parquet(spark, model_dir, str(d / "data.parquet"), url, id_columns=["txn_id"])
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert score_parquet(spark, model_dir, str(d / "data.parquet"), url, id_columns=["txn_id"],
                         overwrite=True)["rows"] == 3000
    assert {p.name for p in out.glob("part-*")}.isdisjoint(before)  # a new job's files

    df = spark.createDataFrame(generate_transactions(300, 0.05, seed=2))
    with pytest.raises(OutputError, match="already exists; pass overwrite=True"):
        sample_normals(df, 100, 7, out, label="Class")
    assert sample_normals(df, 100, 7, out, label="Class", overwrite=True) == 100


PYTHON_TRACEBACK = """Traceback (most recent call last):
  File "/opt/spark/python/pyspark/worker.py", line 3, in main
    func = read_command(serializer, infile)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
ModuleNotFoundError: No module named 'aedetect'"""


@pytest.mark.parametrize("message, line", [
    ("An exception was thrown from the Python worker:\n" + PYTHON_TRACEBACK,  # classic
     "ModuleNotFoundError: No module named 'aedetect'"),
    ("\n  An exception was thrown from the Python worker. Please see the stack trace below.\n[PYTHON_EXCEPTION] "
     "An exception was thrown from the Python worker: " + PYTHON_TRACEBACK + "\n SQLSTATE: 38000\n\nJVM "
     "stacktrace:\norg.apache.spark.api.python.PythonException: Traceback\n\tat org.apache.spark.X(X.scala:1)",
     "ModuleNotFoundError: No module named 'aedetect'"),  # Spark Connect
    ("[PATH_NOT_FOUND] Path does not exist: file:/x. SQLSTATE: 42K03\n\nJVM stacktrace:\n"
     "org.apache.spark.sql.AnalysisException\n\tat org.apache.spark.X(X.scala:1)",
     "[PATH_NOT_FOUND] Path does not exist: file:/x."),
    ("An error occurred while calling o49.collectToPython.\n: org.apache.spark.SparkException: Job aborted due "
     "to stage failure: Task 0 in stage 0.0 failed 1 times, most recent failure: Lost task 0.0 in stage 0.0 "
     "(TID 0) (192.0.2.2 executor driver): java.io.IOException: Cannot run program \"/x/python\": error=2\n"
     "\tat java.lang.ProcessBuilder.start(ProcessBuilder.java:1143)\nCaused by: java.io.IOException: error=2",
     'java.io.IOException: Cannot run program "/x/python": error=2'),  # py4j, classic
])
def test_spark_errors_become_one_line(message, line):
    from pyspark.errors import PySparkException

    from aedetect.errors import AedetectError
    from aedetect.serving.spark import error_line, spark_errors

    assert error_line(Exception(message)) == line
    with pytest.raises(AedetectError, match="^Spark could not write x: ") as caught:
        with spark_errors("write x"):
            raise PySparkException(message)
    assert "\n" not in str(caught.value)


# The CLI's `main` (one line for an AedetectError, exit 1; anything else is a traceback), run
# in a subprocess for each argument list; its console goes to stdout, Spark's logs to stderr.
CLI_RUNS = """
import sys, traceback
from aedetect.cli import common
from aedetect.cli.app import main
common.console.file = sys.stdout

def cli(*args):
    print("@@run", flush=True)
    sys.argv = ["aedetect", *args]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        code = "traceback"
    print(f"@@exit {code}", flush=True)
"""


def cli_runs(stdout: str) -> list[tuple[str, str]]:
    """(exit code, what the run printed) for each `cli(...)` call of CLI_RUNS (what the script
    printed after a run's exit code is not the run's)."""
    runs = []
    for part in stdout.split("@@run\n")[1:]:
        text, _, code = part.rpartition("@@exit ")
        runs.append((code.split()[0], text.strip()))
    return runs


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.slow
def test_spark_connect_cli_writes_refuses_an_existing_output_and_overwrites(lake, reference, model_dir, tmp_path):
    """`aedetect spark score --remote` through a local Spark Connect server: the scores of
    `aedetect score`; again without --overwrite, one line and nothing written (the output is a
    URL, so the session checks it, not the CLI); with --overwrite, replaced. The library's
    `sample_normals` refuses and overwrites the same way through Connect."""
    d, _ = lake
    out = tmp_path / "scored"
    args = ["spark", "score", "--model", str(model_dir), "--data", str(d / "data.parquet"), "--out",
            out.as_uri(), "--remote", "local[2]", "--id-columns", "txn_id", "--top-k", "2"]
    code = CLI_RUNS + f"""
import os, json
args = {args!r}
cli(*args)
before = sorted((f, os.stat(os.path.join({str(out)!r}, f)).st_mtime_ns) for f in os.listdir({str(out)!r}))
cli(*args)
after = sorted((f, os.stat(os.path.join({str(out)!r}, f)).st_mtime_ns) for f in os.listdir({str(out)!r}))
print("@@unchanged", before == after)
print("@@before", json.dumps([f for f, _ in before]))
cli(*args, "--overwrite")

from pyspark.sql import SparkSession
from aedetect.errors import OutputError
from aedetect.data.generate import generate_transactions
from aedetect.serving.spark import sample_normals
spark = SparkSession.builder.getOrCreate()
print("@@session", type(spark).__module__)
df = spark.createDataFrame(generate_transactions(300, 0.05, seed=2))
shards = {str(tmp_path / 'shards')!r}
print("@@sampled", sample_normals(df, 100, 7, shards, label="Class"))
try:
    sample_normals(df, 100, 7, shards, label="Class")
except OutputError as exc:
    print("@@refused", exc)
print("@@sampled", sample_normals(df, 100, 7, shards, label="Class", overwrite=True))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYSPARK_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = cli_runs(proc.stdout)
    assert [code for code, _ in runs] == ["0", "1", "0"], proc.stdout[-3000:]
    assert one_error_line(runs[1][1]) == f"error: {out.as_uri()} already exists; pass --overwrite to replace it"
    assert "@@unchanged True" in proc.stdout
    first = json.loads(proc.stdout.split("@@before ")[1].splitlines()[0])
    assert "_SUCCESS" in first and {p.name for p in out.glob("part-*")}.isdisjoint(first)
    assert_same_scores(pd.read_parquet(out), reference, reference.attrs["threshold"])
    assert "@@session pyspark.sql.connect" in proc.stdout
    assert proc.stdout.count("@@sampled 100") == 2
    assert f"@@refused {tmp_path / 'shards'} already exists; pass overwrite=True to replace it" in proc.stdout


@pytest.fixture(scope="module")
def bare_python():
    """A Python of this minor version without aedetect (and, here, without numpy): the system's."""
    for path in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if not os.path.exists(path) or os.path.realpath(path) == os.path.realpath(sys.executable):
            continue
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        probe = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); import aedetect"],
                               capture_output=True, text=True, env=env)
        if probe.returncode != 0 and probe.stdout.strip() == "{}.{}".format(*sys.version_info[:2]):
            return path
    pytest.skip("no Python of this version without aedetect to run Spark's workers")


@pytest.mark.slow
def test_workers_without_aedetect_are_named_in_one_line_before_the_job(lake, model_dir, bare_python, tmp_path):
    """Plain PySpark whose workers run a Python without aedetect: `aedetect.spark.score` says so
    in one line (which Python, what is missing, how to fix it) before any scoring task runs;
    the CLI prints that line and writes nothing."""
    import aedetect

    d, _ = lake
    src = os.path.dirname(os.path.dirname(aedetect.__file__))
    out = tmp_path / "scored"
    code = f"""
import sys
sys.path.insert(0, {src!r})
""" + CLI_RUNS + f"""
from pyspark.sql import SparkSession
import aedetect.spark
from aedetect.errors import AedetectError
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
df = spark.read.parquet({str(d / 'data.parquet')!r})
try:
    aedetect.spark.score(df, {str(model_dir)!r}, id_columns=["txn_id"]).count()
    print("@@scored")
except AedetectError as exc:
    print("@@error", str(exc).replace("\\n", "<newline>"))
except Exception as exc:
    print("@@other", type(exc).__name__, str(exc)[:300].replace("\\n", " "))
cli("spark", "score", "--model", {str(model_dir)!r}, "--data", {str(d / 'data.parquet')!r},
    "--out", {str(out)!r}, "--master", "local[1]")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**env, "TF_CPP_MIN_LOG_LEVEL": "2", "PYSPARK_PYTHON": bare_python})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = proc.stdout.split("@@error ", 1)[-1].splitlines()[0]
    assert "@@error" in proc.stdout, proc.stdout[-3000:]
    assert "<newline>" not in line
    assert bare_python in line and "No module named 'aedetect'" in line
    assert "--py-files" in line and "spark.submit.pyFiles" in line
    [(exit_code, text)] = cli_runs(proc.stdout)
    assert exit_code == "1" and one_error_line(text) == f"error: {line}"
    assert not out.exists()
