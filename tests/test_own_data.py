"""Any team's table end to end: schema inference and overrides, categories, datetimes, missing
values, no label; train, evaluate, score (gzip CSV, Parquet), serve and export."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from aedetect.data.generate import FRAUD_KINDS, generate_transaction_log
from aedetect.data.infer import infer_schema
from aedetect.data.io import write_table
from aedetect.errors import AedetectError, DataError
from aedetect.serving.export import EXPORT_RTOL
from aedetect.serving.runtime import KERAS_RTOL
from aedetect.training.config import TrainConfig


def run(*args) -> str:
    """The command line in this process (TensorFlow is imported once for the whole file);
    returns what it printed."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def table():
    return generate_transaction_log(3000, 0.04, seed=5)


@pytest.fixture(scope="module")
def files(table, tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    return {suffix: write_table(table, d / f"tx{suffix}") for suffix in (".csv.gz", ".parquet")}


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    """Infer a schema file, then train from it through the command line, one column excluded."""
    d = tmp_path_factory.mktemp("own-model")
    run("schema", "infer", "--data", files[".csv.gz"], "--out", d / "schema.yaml")
    model = d / "model"
    proc = run("train", "--data", files[".csv.gz"], "--schema", d / "schema.yaml", "--out", model,
               "--exclude-columns", "account_age_days", "--epochs", 3, "--hidden-units", "24,8,24",
               "--set", "batch_size=64")
    return model, proc


def test_generated_table_has_the_planted_kinds(table):
    assert table["is_fraud"].sum() == 120
    assert table["fraud_kind"].value_counts().to_dict() == {k: 24 for k in FRAUD_KINDS}
    assert table["device"].isna().any() and table["account_age_days"].isna().any()
    assert table["transaction_id"].is_unique
    hours = pd.to_datetime(table["timestamp"]).dt.hour
    night = table["fraud_kind"] == "night"
    assert hours[night].between(1, 4).all()
    assert generate_transaction_log(3000, 0.04, seed=5).equals(table)


def test_inferred_roles_and_types(table):
    s = infer_schema(table)
    role = {c.name: c.role for c in s.columns}
    kind = {c.name: c.type for c in s.columns}
    assert s.label == "is_fraud" and s.time == "timestamp" and kind["timestamp"] == "datetime"
    assert set(s.ids) == {"transaction_id", "customer_id", "merchant_id"}
    assert role["fraud_kind"] == "excluded"  # set only on frauds: reading it would leak the label
    assert kind["merchant_category"] == kind["device"] == "categorical"
    assert s.column("amount").log and not s.column("customer_avg_amount").log


def test_credit_card_columns_infer_to_todays_fixed_schema(frame):
    from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
    from aedetect.model.preprocessing import Preprocessor

    s = infer_schema(frame)
    assert (s.features, s.label, s.time) == (list(CREDITCARD.features), "Class", "Time")
    x = frame[list(CREDITCARD.features)]
    new = Preprocessor.from_schema(s).fit(x)
    old = Preprocessor(CREDITCARD.features, LOG_COLUMNS, PERIODIC_COLUMNS).fit(x)
    assert new.output_names == old.output_names
    np.testing.assert_array_equal(new.transform(x), old.transform(x.to_numpy()))


def test_overrides_and_schema_files(table, tmp_path):
    from aedetect.data.schema import DatasetSchema

    s = infer_schema(table).with_overrides(label_column=None, id_columns=["device"],
                                          exclude_columns=["amount"],
                                          categorical_columns=["account_age_days"])
    assert "device" in s.ids and "amount" not in s.features
    assert s.column("account_age_days").type == "categorical"
    for name in ("s.yaml", "s.json"):
        assert DatasetSchema.from_file(s.to_file(tmp_path / name)) == s
    with pytest.raises(DataError, match="no column.*'nope'"):
        s.with_overrides(exclude_columns=["nope"])
    with pytest.raises(DataError, match="label.*categorical"):
        s.with_overrides(label_column="channel")


def test_preprocessing_of_categories_and_missing_values(table):
    import tensorflow as tf

    from aedetect.data.schema import as_seconds
    from aedetect.model.preprocessing import Preprocessor

    s = infer_schema(table)
    pre = Preprocessor.from_schema(s).fit(table)
    names = pre.output_names
    assert "device_age_days:missing" in names and "device=(missing)" in names
    assert "merchant_category=(unseen)" in names and "timestamp:weekday_sin" in names
    new = table.head(4).copy()
    new.loc[0, "merchant_category"] = "spaceflight"
    x = pre.transform(new)
    assert x[0, names.index("merchant_category=(unseen)")] > 0.5
    assert x[1:, names.index("merchant_category=(unseen)")].max() < 0.5
    # TensorFlow computes the same features (the SavedModel export runs this graph).
    cols = {b["column"]: tf.constant(as_seconds(new[b["column"]]) if b.get("datetime") else
                                     new[b["column"]].fillna("").astype(str).to_numpy()
                                     if b["kind"] in ("onehot", "frequency") else
                                     new[b["column"]].to_numpy("float32"))
            for b in pre.blocks}
    np.testing.assert_allclose(pre.transform_tf(cols).numpy(), x, atol=1e-5)
    again = Preprocessor.from_config(json.loads(json.dumps(pre.to_config())))
    np.testing.assert_array_equal(again.transform(new), x)
    # Contributions sum back to the input columns; reasons speak the user's terms.
    c = np.abs(x)
    cols_, per_col = pre.column_contributions(c)
    np.testing.assert_allclose(per_col.sum(axis=1), c.sum(axis=1), rtol=1e-6)
    own = [[j for j, s in enumerate(pre.sources) if s == name] for name in cols_]
    assert any(len(j) > 1 for j in own)  # a column of several features (the one-hot, the dates)
    np.testing.assert_allclose(per_col, np.stack([c[:, j].sum(axis=1) for j in own], axis=1), rtol=1e-6)
    assert pre.describe(new, np.array([["merchant_category"]]))[0, 0] == \
        "merchant_category='spaceflight' (unseen)"
    with pytest.raises(DataError, match=r"missing column\(s\) 'amount'"):
        pre.transform(new.drop(columns="amount"))
    bad = new.astype({"amount": object})
    bad.loc[2, "amount"] = "lots"
    with pytest.raises(DataError, match="column 'amount', row 3: value 'lots' is not a number"):
        pre.transform(bad)


def test_train_evaluate_score_from_the_command_line(trained, files, tmp_path):
    model, log = trained
    assert "merchant_category" in log and "categorical" in log  # the schema table was printed
    manifest = json.loads((model / "manifest.json").read_text())
    assert "account_age_days" not in manifest["input_schema"]["feature_names"]
    run("evaluate", "--model", model, "--data", files[".parquet"], "--out", tmp_path / "m.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["roc_auc"] > 0.6, metrics["roc_auc"]
    out = tmp_path / "scored.csv"
    run("score", "--model", model, "--data", files[".csv.gz"], "--out", out,
        "--id-columns", "transaction_id")
    scored = pd.read_csv(out)
    assert len(scored) == 3000 and scored["transaction_id"].is_unique
    assert set(scored["top1_feature"]) <= set(manifest["input_schema"]["feature_names"])
    assert scored["top1_reason"].str.match(r"^[a-z_0-9]+=").all()


def test_scoring_parquet_unseen_category_and_missing_column(trained, table, tmp_path):
    from aedetect.model.detector import load_detector
    from aedetect.serving.batch import score_file

    det = load_detector(trained[0])
    new = table.head(50).copy()
    new.loc[3, "merchant_category"] = "spaceflight"
    new["note"] = "extra"
    write_table(new, tmp_path / "new.parquet")
    s = score_file(det, tmp_path / "new.parquet", tmp_path / "out.parquet")
    assert s.rows_scored == 50 and "note" in s.ignored_columns
    out = pd.read_parquet(tmp_path / "out.parquet")
    reasons = out.filter(like="_reason").astype(str).agg(" ".join, axis=1)
    assert "merchant_category='spaceflight' (unseen)" in reasons[3]
    assert out["score"][3] > np.median(out["score"])
    write_table(new.drop(columns=["channel"]), tmp_path / "less.csv")
    with pytest.raises(DataError, match="missing column.*'channel'"):
        score_file(det, tmp_path / "less.csv", tmp_path / "out2.csv")


def test_service_takes_categories_as_strings(trained, table):
    from fastapi.testclient import TestClient

    from aedetect.serving.app import create_app

    client = TestClient(create_app(trained[0]))
    props = client.get("/openapi.json").json()["components"]["schemas"]["Transaction"]["properties"]
    assert "string" in json.dumps(props["merchant_category"])
    rows = json.loads(table.head(3).drop(columns=["is_fraud", "fraud_kind"]).to_json(orient="records"))
    rows[0]["merchant_category"], rows[1]["device"] = "spaceflight", None
    for r in rows:
        r["id"] = r.pop("transaction_id")
    body = {"transactions": [{k: v for k, v in r.items() if k not in ("customer_id", "merchant_id")}
                             for r in rows]}
    resp = client.post("/v1/score", json=body)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["id"] for r in results] == [r["id"] for r in rows]
    assert any("(unseen)" in (f["reason"] or "") for f in results[0]["top_features"])
    bad = {"transactions": [{**body["transactions"][0], "amount": "lots"}]}
    assert client.post("/v1/score", json=bad).status_code == 422


def test_savedmodel_takes_strings_and_scores_like_python(trained, table, tmp_path):
    import tensorflow as tf

    from aedetect.data.schema import as_seconds
    from aedetect.model.detector import load_detector
    from aedetect.serving.export import export_savedmodel, input_dtypes

    det = load_detector(trained[0])
    path = export_savedmodel(det, tmp_path / "export")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    rows = table.head(20)
    dtypes = input_dtypes(det)
    assert dtypes["merchant_category"] == "string" and dtypes["timestamp"] == "float64"
    got = serve(**{name.replace(" ", "_"): tf.constant(v) for name, v in
                   _export_feed(rows, dtypes, as_seconds).items()})["score"].numpy()
    expected = det.anomaly_score(rows)
    assert np.max(np.abs(got - expected) / expected) <= EXPORT_RTOL


def test_runtime_scores_an_own_data_model_like_keras(trained, table):
    """Categories (one-hot, rare, unseen, missing), datetimes and an imputed number: the NumPy
    runtime within KERAS_RTOL of the Keras path on every row (docs/serving.md)."""
    from aedetect.model.detector import load_detector
    from aedetect.serving.runtime import load_scorer

    rows = table.head(500).copy()
    rows.loc[0, "merchant_category"] = "spaceflight"
    rows.loc[1, "device"] = None
    rows.loc[2, "device_age_days"] = np.nan
    expected = load_detector(trained[0]).anomaly_score(rows)
    got = load_scorer(trained[0]).anomaly_score(rows)
    assert np.max(np.abs(got - expected) / expected) <= KERAS_RTOL


def test_export_says_the_dtype_of_each_input(trained, tmp_path):
    """Seven category columns are string inputs, the timestamp float64 seconds: the line says so
    (it said "one float64 [None] input per column")."""
    printed = " ".join(run("export", "--model", trained[0], "--format", "onnx", "--out", tmp_path / "m.onnx").split())
    assert "inputs: one [None] tensor per column, named like it:" in printed
    assert "7 string ('merchant_category', 'merchant_country', ..., 'tx_count_1h'; \"\" = missing)" in printed
    assert "1 float64 seconds since 1970 ('timestamp')" in printed
    assert "one float64 [None] input per column" not in printed


def _export_feed(rows, dtypes, as_seconds):
    """The exports' inputs: strings ("" = missing) for categories, float64 seconds for
    datetimes, float64 (NaN = missing) for numbers."""
    feed = {}
    for name, dtype in dtypes.items():
        v = rows[name]
        if dtype == "string":
            feed[name] = v.fillna("").astype(str).to_numpy(dtype=object)
        elif pd.api.types.is_numeric_dtype(v):
            feed[name] = v.to_numpy("float64", na_value=np.nan)
        else:
            feed[name] = as_seconds(v)
    return feed


def test_onnx_export_reads_categories_gaps_and_dates_like_the_runtime(trained, table, tmp_path):
    import onnxruntime as ort

    from aedetect.data.schema import as_seconds
    from aedetect.serving.export import export_onnx, input_dtypes
    from aedetect.serving.runtime import load_scorer

    scorer = load_scorer(trained[0])
    rows = table.head(200).copy()
    rows.loc[0, "merchant_category"] = "spaceflight"  # unseen
    rows.loc[1, "device"] = None  # missing category
    rows.loc[2, "device_age_days"] = np.nan  # an imputed number with its indicator
    assert rows["tx_count_1h"].max() > 2  # rare values of a low-cardinality integer category
    path = export_onnx(scorer, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = _export_feed(rows, input_dtypes(scorer), as_seconds)
    score, flag = sess.run(["score", "flag"], feed)
    expected = scorer.anomaly_score(rows)
    assert np.max(np.abs(score - expected) / expected) <= EXPORT_RTOL
    np.testing.assert_array_equal(flag, (expected > scorer.threshold_).astype("int32"))


def test_a_table_with_no_label_trains_on_every_row(table, tmp_path):
    from aedetect.model.detector import AutoencoderDetector
    from aedetect.training.workflow import train_detector

    unlabelled = table.drop(columns=["is_fraud", "fraud_kind"]).head(1500)
    schema = infer_schema(unlabelled)
    assert schema.label is None
    config = TrainConfig(epochs=1, hidden_units=[16, 4, 16], batch_size=64)
    result = train_detector(unlabelled, config, schema)
    assert result.split.protocol == "unlabelled"
    assert result.split.sizes()["train"] + result.split.sizes()["validation"] == 1500
    with pytest.raises(AedetectError, match="needs labels"):
        train_detector(unlabelled, config.model_copy(update={"threshold_rule": "best_f1"}), schema)
    det = result.detector
    assert isinstance(det, AutoencoderDetector) and np.isfinite(det.threshold_)
    # Save/load round trip: the same scores, categories and missing values included.
    loaded = AutoencoderDetector.load(det.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.anomaly_score(unlabelled), det.anomaly_score(unlabelled))


def test_drift_reference_profiles_categories_and_hours(trained, table):
    from aedetect.model.detector import load_detector
    from aedetect.monitoring.reference import DriftSettings, compare_batch, load_reference

    det, ref = load_detector(trained[0]), load_reference(trained[0])
    assert ref.columns["merchant_category"]["kind"] == "categorical"
    assert ref.columns["timestamp"]["transform"] == "hour_of_day"  # not one category per instant
    normal = generate_transaction_log(3000, 0.0, seed=11)
    normal = normal.drop(columns=["is_fraud", "fraud_kind"])
    names = list(det.feature_names_in_)
    calm = compare_batch(ref, normal[names], det.anomaly_score(normal), None, DriftSettings())
    assert not calm["columns"]["timestamp"]["alarm"]  # other days, the same hours
    shifted = normal.copy()
    shifted.loc[shifted.index[:900], "merchant_category"] = "spaceflight"
    res = compare_batch(ref, shifted[names], det.anomaly_score(shifted), None, DriftSettings())
    assert res["columns"]["merchant_category"]["alarm"]
    assert "spaceflight" in res["columns"]["merchant_category"]["new_categories"]


def test_open_inference_protocol_takes_typed_columns(trained, table):
    from fastapi.testclient import TestClient

    from aedetect.serving.app import create_app
    from aedetect.serving.runtime import load_scorer

    model = trained[0]
    client = TestClient(create_app(model))
    meta = client.get(f"/v2/models/{model.name}").json()
    types = {t["name"]: t["datatype"] for t in meta["inputs"]}
    assert types["merchant_category"] == "BYTES" and types["amount"] == "FP64"
    rows = table.head(4).copy()
    rows.loc[rows.index[0], "merchant_category"] = "spaceflight"
    rows.loc[rows.index[1], "device"] = None
    inputs = []
    for name, kind in types.items():
        v = rows[name].astype(object).where(rows[name].notna(), None).tolist()
        inputs.append({"name": name, "shape": [len(rows)], "datatype": kind, "data": v})
    r = client.post(f"/v2/models/{model.name}/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    score = {o["name"]: o["data"] for o in r.json()["outputs"]}["score"]
    np.testing.assert_allclose(score, load_scorer(model).anomaly_score(rows), rtol=1e-9)
    wrong = [{**t, "datatype": "FP64", "data": [1.0] * len(rows)} if t["name"] == "channel" else t
             for t in inputs]
    r = client.post(f"/v2/models/{model.name}/infer", json={"inputs": wrong})
    assert r.status_code == 400 and "channel" in r.json()["error"]


def test_the_schema_table_says_how_missing_values_are_read():
    table = generate_transaction_log(2000, 0.02, seed=1)
    schema = infer_schema(table)
    notes = {c.name: c.note for c in schema.columns}
    assert table["device"].isna().any() and table["account_age_days"].isna().any()
    assert re.search(r"\d+(\.\d+)?% missing: their own category, \(missing\)", notes["device"])
    assert re.search(r"\d+(\.\d+)?% missing: imputed with the training median, flagged in "
                     r"account_age_days:missing", notes["account_age_days"])
    assert "missing" not in notes["amount"]


def test_all_columns_keep_one_type_when_a_chunk_is_read_as_text(trained, table, tmp_path):
    """A chunk whose number column holds a bad value is read as text (so the rule names it);
    the chunks around it were read typed. With --all-columns and skipped bad rows, the number
    columns come out as the model read them in every chunk: one type from start to end."""
    from aedetect.serving.batch import score_file
    from aedetect.serving.runtime import load_scorer

    text = table.head(600).to_csv(index=False).splitlines()
    header = text[0].split(",")
    row = text[450].split(",")
    row[header.index("amount")] = "12x"  # not a number, in the third chunk
    text[450] = ",".join(row)
    src = tmp_path / "in.csv"
    src.write_text("\n".join(text) + "\n")
    out = tmp_path / "out.parquet"
    s = score_file(load_scorer(trained[0]), src, out, all_columns=True, chunk_rows=200, on_bad_rows="skip")
    assert s.rows_skipped == 1 and s.rows_scored == 599
    scored = pd.read_parquet(out)
    assert str(scored["amount"].dtype) == "float64" and str(scored["merchant_category"].dtype) in ("object", "str")
    kept = table.head(600).drop(index=449).reset_index(drop=True)
    np.testing.assert_array_equal(scored["amount"].to_numpy(), kept["amount"].to_numpy())
