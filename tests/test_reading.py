"""One reading of every value (issue: silently wrong scores). The same cell gives the same value
through training, `evaluate`, `score` (CSV, Parquet), the service and V2; values a transform
cannot represent are refused, never clamped; a model folder's threshold must fit its own
validation scores. Each test reproduces a defect found by a hostile-input probe."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from aedetect.data.generate import generate_transaction_log
from aedetect.data.infer import infer_schema
from aedetect.data.io import needs_text_reread, read_raw, write_table
from aedetect.data.values import category_text, read_booleans, read_datetimes
from aedetect.errors import AedetectError, ArtifactError, DataError
from aedetect.serving.app import ServiceSettings, create_app
from aedetect.serving.batch import score_file
from aedetect.serving.runtime import load_scorer

MCC = ["0742", "0763", "5411", "5812", "5999"]


def run(*args, ok: bool = True):
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output
    res.text = res.output + (str(res.exception) if res.exception else "")
    return res


def _log(n: int, seed: int) -> pd.DataFrame:
    """A raw log with the value kinds that different readers used to take differently: codes
    with leading zeros, an integer code with gaps (pandas writes 1.0), booleans as text, and
    day-first dates."""
    t = generate_transaction_log(n, 0.03, seed=seed)
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "amount": t["amount"],
        "mcc": rng.choice(MCC, n, p=[0.3, 0.2, 0.2, 0.2, 0.1]),
        "tx_count_1h": t["tx_count_1h"].clip(upper=6).astype("float64"),
        "is_weekend": rng.choice(["true", "false"], n),
        "ts": pd.to_datetime(t["timestamp"]).dt.strftime("%d/%m/%Y %H:%M"),
        "is_fraud": t["is_fraud"],
    })
    df.loc[rng.random(n) < 0.1, "tx_count_1h"] = np.nan  # gaps: pandas writes the rest as 1.0
    return df


@pytest.fixture(scope="module")
def log_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("reading")
    df = _log(2000, 3)
    csv = d / "log.csv"
    df.to_csv(csv, index=False)  # pandas' own text: "1.0", "true", "0742"
    return df, csv, d


@pytest.fixture(scope="module")
def log_model(log_files):
    df, csv, d = log_files
    model = d / "model"
    run("train", "--data", csv, "--out", model, "--epochs", 3, "--hidden-units", "16,4,16",
        "--categorical-columns", "tx_count_1h",
        "--set", "batch_size=64")
    return model


def test_reading_rules_in_one_place():
    assert category_text(pd.Series(["0742", "7.0", "7", "", None])).tolist() == ["0742", "7", "7", None, None]
    assert category_text(pd.Series([7, 8])).tolist() == ["7", "8"]
    assert category_text(pd.Series([7.0, np.nan, 0.5])).tolist() == ["7", None, "0.5"]
    assert category_text(pd.Series([7, None], dtype=object)).tolist() == ["7", None]
    v, p = read_booleans(pd.Series(["true", "FALSE", " yes ", "No", "1", "0", "", "maybe"]))
    assert v[:6].tolist() == [1, 0, 1, 0, 1, 0] and np.isnan(v[6]) and p[6] is None
    assert "not a boolean" in p[7]
    v, p = read_datetimes(pd.Series(["now", "today", "2024-03-04T10:00:00+05:00", 1709511927,
                                     "1709511927", "2024-03-04 10:00:00.500"], dtype=object))
    assert "relative date" in p[0] and "relative date" in p[1]
    assert v[2] == pd.Timestamp("2024-03-04 10:00").value / 1e9  # wall clock, offset kept out
    assert v[3] == v[4] == 1709511927.0  # numbers are seconds, as text too
    assert v[5] == pd.Timestamp("2024-03-04 10:00:00.5").value / 1e9


def test_day_first_dates_are_inferred_and_stored():
    s = pd.Series(["13/01/2024 10:00", "02/03/2024 11:30", "25/12/2023 00:05"])
    schema = infer_schema(pd.DataFrame({"ts": s, "x": [1.0, 2.0, 3.0]}))
    assert schema.column("ts").format == "%d/%m/%Y %H:%M"
    v, p = read_datetimes(pd.Series(["02/03/2024 11:30"]), schema.column("ts").format)
    assert v[0] == pd.Timestamp("2024-03-02 11:30").value / 1e9  # 2 March, whatever the batch


def test_a_model_scores_its_own_training_csv(log_model, log_files, tmp_path):
    """Before: score read '0742' as written while training read 742, and '1.0' vs '1': 19,594
    of 20,000 rows flagged with reasons `(unseen)`."""
    df, csv, _ = log_files
    out = tmp_path / "scored.csv"
    run("score", "--model", log_model, "--data", csv, "--out", out)
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    flagged = (scored["flag"].str.lower().isin(["true", "1"])).mean()
    assert flagged < 0.1, flagged  # before: 98% (19,594 of 20,000)
    reasons = " ".join(scored.filter(like="reason").fillna("").to_numpy().ravel())
    assert "mcc='0742' (unseen)" not in reasons and "mcc='742'" not in reasons
    assert "tx_count_1h='1' (unseen)" not in reasons and "'1.0'" not in reasons
    # Parquet: the codes as text, the counts as floats; the same scores as the CSV
    pq_path = tmp_path / "log.parquet"
    write_table(df, pq_path)
    out2 = tmp_path / "scored2.csv"
    run("score", "--model", log_model, "--data", pq_path, "--out", out2)
    s1, s2 = pd.read_csv(out)["score"], pd.read_csv(out2)["score"]
    np.testing.assert_allclose(s1, s2, rtol=1e-6)
    # evaluate reads the file as score does
    res = run("evaluate", "--model", log_model, "--data", csv, "--rows", "all")
    assert "error" not in res.output.lower()


def test_service_score_does_not_depend_on_the_batch(log_model):
    """Before: tx_count_1h 1 scored 46 alone and 860 next to a null ('1.0' unseen)."""
    client = TestClient(create_app(log_model, ServiceSettings()))
    row = {"amount": 20.5, "mcc": "0742", "tx_count_1h": 1, "is_weekend": True,
           "ts": "02/03/2024 11:30"}
    alone = client.post("/v1/score", json={"transactions": [row]})
    assert alone.status_code == 200, alone.text
    mixed = client.post("/v1/score", json={"transactions": [row, {**row, "tx_count_1h": None}]})
    assert mixed.status_code == 200, mixed.text
    assert mixed.json()["results"][0]["score"] == pytest.approx(alone.json()["results"][0]["score"], rel=1e-6)
    def v2(count, ts):
        inputs = [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [20.5]},
                  {"name": "mcc", "shape": [1], "datatype": "BYTES", "data": ["0742"]},
                  {"name": "tx_count_1h", "shape": [1], "datatype": "BYTES", "data": [count]},
                  {"name": "is_weekend", "shape": [1], "datatype": "BOOL", "data": [True]},
                  {"name": "ts", "shape": [1], "datatype": "BYTES" if isinstance(ts, str) else "FP64",
                   "data": [ts]}]
        r = client.post(f"/v2/models/{log_model.name}/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        return r.json()["outputs"][0]["data"][0]

    base = alone.json()["results"][0]["score"]
    assert v2(1.0, "02/03/2024 11:30") == pytest.approx(base, rel=1e-6)
    assert v2("1", "02/03/2024 11:30") == pytest.approx(base, rel=1e-6)
    seconds = pd.Timestamp("2024-03-02 11:30").value / 1e9  # V2 numbers are seconds, not ns
    assert v2(1, seconds) == pytest.approx(base, rel=1e-6)


def test_booleans_read_one_way(log_model, log_files, tmp_path):
    """Before: `value 'false' is not a number` on the model's own CSV; pandas' True/False too."""
    df, _, _ = log_files
    for true, false in (("True", "False"), ("yes", "no"), ("1", "0")):
        path = tmp_path / f"b-{true}.csv"
        df.head(50).assign(is_weekend=df["is_weekend"].map({"true": true, "false": false})).to_csv(path, index=False)
        run("score", "--model", log_model, "--data", path, "--out", tmp_path / f"s-{true}.csv")
    path = tmp_path / "bad.csv"
    df.head(5).assign(is_weekend="maybe").to_csv(path, index=False)
    res = run("score", "--model", log_model, "--data", path, "--out", tmp_path / "bad-out.csv", ok=False)
    assert res.exit_code != 0 and "'is_weekend'" in res.text and "not a boolean" in res.text


def test_a_boolean_is_not_a_number(model_dir, frame, tmp_path):
    """Before: a Parquet boolean in a numeric column scored as 1.0/0.0 without a word."""
    df = frame.head(20).copy()
    df["V3"] = df["V3"] > 0
    path = tmp_path / "b.parquet"
    write_table(df, path)
    with pytest.raises(DataError, match=r"'V3'.*boolean"):
        score_file(load_scorer(model_dir), path, tmp_path / "out.csv")


def test_relative_and_unreadable_dates_are_refused(log_model, log_files, tmp_path):
    """Before: `now` and `today` scored as the current time (rc 0)."""
    df, _, _ = log_files
    for word in ("now", "today"):
        path = tmp_path / f"{word}.csv"
        df.head(5).assign(ts=word).to_csv(path, index=False)
        res = run("score", "--model", log_model, "--data", path, "--out", tmp_path / f"{word}-o.csv", ok=False)
        assert res.exit_code != 0 and "relative date" in res.text


def test_day_first_dates_do_not_depend_on_the_batch(log_model, log_files, tmp_path):
    """Before: a file whose dates all had a day <= 12 was read month-first (500 rows changed)."""
    df, _, _ = log_files
    day = df["ts"].str.slice(0, 2).astype(int)
    ambiguous = df[day <= 12].head(200)
    both = tmp_path / "all.csv"
    only = tmp_path / "ambiguous.csv"
    df.to_csv(both, index=False)
    ambiguous.to_csv(only, index=False)
    run("score", "--model", log_model, "--data", both, "--out", tmp_path / "a.csv")
    run("score", "--model", log_model, "--data", only, "--out", tmp_path / "b.csv")
    a = pd.read_csv(tmp_path / "a.csv")["score"].to_numpy()[ambiguous.index]
    b = pd.read_csv(tmp_path / "b.csv")["score"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_offsets_read_the_same_in_every_path(log_files, tmp_path):
    """Before: an offset was ignored in one path and applied in another."""
    df = pd.DataFrame({"ts": ["2024-03-04T10:00:00+05:00", "2024-03-04T23:30:00-03:00"] * 30,
                       "x": np.linspace(1, 2, 60)})
    path = tmp_path / "tz.csv"
    df.to_csv(path, index=False)
    schema = infer_schema(df)
    typed = read_raw(path)  # the CSV reader's own parsing turns offsets into UTC: read again as text
    assert needs_text_reread(path, typed, schema)
    text = read_raw(path, schema)
    expect = [pd.Timestamp("2024-03-04 10:00").value / 1e9, pd.Timestamp("2024-03-04 23:30").value / 1e9]
    for frame in (text, df, df.astype(object)):
        v, p = read_datetimes(frame["ts"])
        assert (p == None).all()  # noqa: E711
        assert v[:2].tolist() == expect


def test_negative_values_in_log_columns_are_refused(log_model, log_files, model_dir, frame, tmp_path):
    """Before: amounts 0, -999,999,999,999 and -1e15 all scored 65.79, flag 0."""
    df, _, _ = log_files
    path = tmp_path / "neg.csv"
    df.head(5).assign(amount=[0, -1, -999_999_999_999, -1e15, 10]).to_csv(path, index=False)
    res = run("score", "--model", log_model, "--data", path, "--out", tmp_path / "neg-o.csv", ok=False)
    assert res.exit_code != 0 and "'amount'" in res.text and "below 0" in res.text
    client = TestClient(create_app(log_model, ServiceSettings()))
    r = client.post("/v1/score", json={"transactions": [{"amount": -5.0, "mcc": "0742", "tx_count_1h": 1,
                                                         "is_weekend": True, "ts": "02/03/2024 11:30"}]})
    assert r.status_code == 422 and "amount" in r.text
    scorer = load_scorer(model_dir)  # the credit-card Amount
    x = frame[scorer.feature_names_in_].head(3).copy()
    x.loc[x.index[0], "Amount"] = -10.0
    with pytest.raises(DataError, match=r"'Amount'.*below 0"):
        scorer.anomaly_score(x)


def _edit_threshold(model_dir, tmp_path, value):
    import shutil

    copy = tmp_path / f"m-{value}"
    shutil.copytree(model_dir, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["threshold"]["value"] = value
    (copy / "manifest.json").write_text(json.dumps(m))
    return copy


@pytest.mark.parametrize("value", [1e300, 0.0])
def test_a_threshold_that_does_not_fit_its_validation_scores_is_refused(log_model, tmp_path, value):
    """Before: a manifest threshold of 1e300 (flags nothing) or 0 (flags everything) loaded."""
    with pytest.raises(ArtifactError, match="threshold"):
        load_scorer(_edit_threshold(log_model, tmp_path, value))


def test_schema_columns_absent_from_the_data_are_refused(log_files, tmp_path):
    """Before: a --schema id column absent from the data wrote a model."""
    df, csv, _ = log_files
    schema = infer_schema(df)
    data = schema.model_dump(mode="json", exclude_defaults=True)
    data["columns"].append({"name": "card_id", "role": "id", "type": "categorical"})
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(data))
    res = run("train", "--data", csv, "--schema", path, "--out", tmp_path / "m", "--epochs", 1, ok=False)
    assert res.exit_code != 0 and "card_id" in res.text
    assert not (tmp_path / "m").exists()


def test_log_columns_must_be_columns(frame):
    """Before: log_columns=['NoSuchColumn'] was ignored."""
    from aedetect import AutoencoderDetector

    with pytest.raises(AedetectError, match="NoSuchColumn"):
        AutoencoderDetector(log_columns=["NoSuchColumn"], epochs=1).fit(frame.head(200)[["V1", "V2"]])


def test_a_datetime_reason_is_a_date_however_it_arrives():
    """Text in the column's format, seconds since 1970 and a timestamp all read as the same date,
    and the reason shows that date (the batch scorer passes seconds, the service the text)."""
    from aedetect.data.schema import ColumnSpec, DatasetSchema
    from aedetect.model.preprocessing import Preprocessor

    schema = DatasetSchema(columns=[ColumnSpec(name="when", type="datetime", format="%d/%m/%Y %H:%M"),
                                    ColumnSpec(name="amount", type="numeric")], missing="error")
    texts = ["04/03/2024 01:04", "05/03/2024 13:30", "06/03/2024 23:59"] * 20
    pre = Preprocessor.from_schema(schema).fit(pd.DataFrame({"when": texts, "amount": np.arange(60.0)}))
    seconds = (pd.to_datetime(pd.Series(texts[:3]), format="%d/%m/%Y %H:%M") - pd.Timestamp(0)).dt.total_seconds()
    forms = {"text": pd.Series(texts[:3]), "seconds": seconds,
             "timestamp": pd.to_datetime(pd.Series(texts[:3]), format="%d/%m/%Y %H:%M")}
    at = np.zeros((3, 1), dtype=int)
    shown = {k: pre.describe(pd.DataFrame({"when": v, "amount": [1.0, 2.0, 3.0]}), at, ["when"])[:, 0].tolist()
             for k, v in forms.items()}
    assert shown["text"] == ["when=2024-03-04 01:04:00", "when=2024-03-05 13:30:00", "when=2024-03-06 23:59:00"]
    assert shown["seconds"] == shown["text"] and shown["timestamp"] == shown["text"]


def test_typed_and_text_number_columns_read_alike(log_model, log_files):
    """The batch scorer takes a number column as the CSV reader typed it when every value is in
    range, and by the per-value rules otherwise: the same values and the same reasons as the
    column read as text, for floats, integers, a gap and values the model refuses."""
    import pyarrow as pa

    from aedetect.data.arrow import parse_rows

    df, _, _ = log_files
    scorer = load_scorer(log_model)
    features = list(scorer.feature_names_in_)
    assert "amount" in features
    rows = pa.Table.from_pandas(df.head(50), preserve_index=False)

    def parsed(amount: pa.Array):
        return parse_rows(rows.set_column(rows.column_names.index("amount"), "amount", amount),
                          features, scorer.preprocessor_, table=True)

    cases = {
        "floats": df["amount"].head(50).to_numpy(),
        "integers": np.round(df["amount"].head(50).to_numpy()).astype("int64"),
        "a gap and refused values": np.r_[df["amount"].head(47).to_numpy(), np.nan, -5.0, 1e16],
    }
    for name, values in cases.items():
        typed = pa.array(values, from_pandas=True)
        text = pa.array([None if v != v else repr(v.item()) for v in values], pa.string())
        (x_typed, why_typed), (x_text, why_text) = parsed(typed), parsed(text)
        pd.testing.assert_frame_equal(x_typed, x_text, obj=name)
        assert list(why_typed) == list(why_text), name
        refused = [w for w in why_typed if w is not None]
        assert len(refused) == (3 if name.startswith("a gap") else 0), (name, refused)


@pytest.mark.parametrize("dtype", [object, "string", "str"])
def test_a_text_category_column_reads_as_each_value_alone(dtype):
    """`category_text` of a column of text (the vectorised path) gives each value what the
    one-value rule gives it: codes written as floats lose their `.0`, empty text is missing,
    anything else (spaces, other digits, dots elsewhere) stays as written."""
    values = ["C1", "7.0", "", None, "x.y", "+3.00", "\u0667.0", " 5.0", "5.0 ", "-0.0", "a", "   ", "1.5"] * 40
    got = category_text(pd.Series(values, dtype=dtype)).tolist()
    alone = [category_text(pd.Series([v], dtype=dtype)).tolist()[0] for v in values[:13]] * 40
    assert got == alone
    assert got[:13] == ["C1", "7", None, None, "x.y", "+3", "\u0667", " 5.0", "5.0 ", "-0", "a", "   ", "1.5"]
