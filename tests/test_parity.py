"""The contract of one reading of every value (hypothesis): for generated rows with every column
type, gaps and odd-but-valid values, a row's score is the same through the Keras estimator on
the table `evaluate` reads, the NumPy runtime, `score` from CSV, gzip CSV and Parquet, `/v1/score`
one row at a time and in any batch order, V2, and (slow run) Spark.

The default run draws 8 examples; the slow run (`make test-slow`) 120 more, not derandomized.
"""

from __future__ import annotations

import csv
import sys

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aedetect.data.io import read_raw
from aedetect.serving.app import ServiceSettings, create_app
from aedetect.serving.batch import score_file
from aedetect.serving.runtime import load_scorer

settings.register_profile("parity-fast", max_examples=8, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
RTOL = 2e-5  # float32 network: a different batch size may round the last bits differently
MCC = ["0742", "0763", "5411", "5812", "5999"]
FMT = "%d/%m/%Y %H:%M"


def _training_table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01")
    ts = start + pd.to_timedelta(np.sort(rng.uniform(0, 20 * 86400, n)), unit="s")
    df = pd.DataFrame({
        "amount": np.round(np.exp(rng.normal(3.5, 1.0, n)), 2),
        "balance": np.round(rng.normal(1000, 300, n), 2),
        "mcc": rng.choice(MCC, n),
        "attempts": rng.integers(1, 4, n).astype("float64"),
        "is_weekend": rng.choice(["true", "false"], n),
        "ts": ts.strftime(FMT),
        "label": (rng.random(n) < 0.02).astype(int),
    })
    df.loc[rng.random(n) < 0.1, "balance"] = np.nan  # imputed
    df.loc[rng.random(n) < 0.1, "attempts"] = np.nan  # an integer code with gaps: "2.0" in CSV
    return df


@pytest.fixture(scope="module")
def parity_model(tmp_path_factory):
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    d = tmp_path_factory.mktemp("parity")
    data = d / "train.csv"
    _training_table().to_csv(data, index=False)
    model = d / "model"
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(model), "--epochs", "3",
                                   "--hidden-units", "16,4,16", "--categorical-columns", "attempts",
                                   "--label-column", "label", "--set", "batch_size=64"])
    assert res.exit_code == 0, res.output
    from aedetect.model.hybrid import open_model

    return model, load_scorer(model), open_model(model), TestClient(create_app(model, ServiceSettings()))


# One cell per column: the text a CSV holds and the value a JSON client sends.
AMOUNT = st.one_of(st.sampled_from([0.0, 0.01, 12.5, 99999.99]),
                   st.floats(0, 5000, allow_nan=False).map(lambda v: round(v, 2)))
BALANCE = st.one_of(st.none(), st.floats(-3000, 3000, allow_nan=False).map(lambda v: round(v, 2)))
MCC_VALUE = st.sampled_from([*MCC, "9999", "742"])  # unseen codes are scored, not refused
ATTEMPTS = st.one_of(st.none(), st.sampled_from([1, 2, 3, 7]))
WEEKEND = st.tuples(st.booleans(), st.sampled_from(["lower", "title", "upper", "yesno", "digit"]))
WHEN = st.datetimes(min_value=pd.Timestamp("2024-01-01").to_pydatetime(),
                    max_value=pd.Timestamp("2024-12-31").to_pydatetime()).map(
    lambda t: t.replace(second=0, microsecond=0))


@st.composite
def rows(draw):
    n = draw(st.integers(1, 6))
    out = []
    for _ in range(n):
        flag, style = draw(WEEKEND)
        word = {"lower": str(flag).lower(), "title": str(flag), "upper": str(flag).upper(),
                "yesno": "yes" if flag else "no", "digit": str(int(flag))}[style]
        out.append({"amount": draw(AMOUNT), "balance": draw(BALANCE), "mcc": draw(MCC_VALUE),
                    "attempts": draw(ATTEMPTS), "is_weekend": (flag, word),
                    "ts": draw(WHEN)})
    return out


def _csv_text(rows_) -> list[list[str]]:
    def num(v):
        return "" if v is None else repr(float(v))

    return [[num(r["amount"]), num(r["balance"]), r["mcc"], num(r["attempts"]), r["is_weekend"][1],
             r["ts"].strftime(FMT)] for r in rows_]


HEADER = ["amount", "balance", "mcc", "attempts", "is_weekend", "ts"]


def _json(r) -> dict:
    return {"amount": r["amount"], "balance": r["balance"], "mcc": r["mcc"],
            "attempts": r["attempts"], "is_weekend": r["is_weekend"][0], "ts": r["ts"].strftime(FMT)}


def _score_via_files(scorer, rows_, tmp_path) -> dict[str, np.ndarray]:
    text = _csv_text(rows_)
    out = {}
    plain = tmp_path / "rows.csv"
    with open(plain, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(text)
    gz = tmp_path / "rows.csv.gz"
    pd.read_csv(plain, dtype=str, keep_default_na=False).to_csv(gz, index=False)
    typed = pd.DataFrame({
        "amount": [r["amount"] for r in rows_],
        "balance": pd.array([r["balance"] for r in rows_], dtype="Float64"),
        "mcc": [r["mcc"] for r in rows_],
        "attempts": pd.array([r["attempts"] for r in rows_], dtype="Int64"),
        "is_weekend": [r["is_weekend"][0] for r in rows_],
        "ts": [r["ts"].strftime(FMT) for r in rows_],
    })
    pq = tmp_path / "rows.parquet"
    typed.to_parquet(pq, index=False)
    for name, path in (("csv", plain), ("gzip", gz), ("parquet", pq)):
        dest = tmp_path / f"scored-{name}.csv"
        score_file(scorer, path, dest, top_k=0)
        out[name] = pd.read_csv(dest)["score"].to_numpy()
    out["evaluate-reader"] = scorer.anomaly_score(read_raw(plain, scorer.dataset_schema)[HEADER])
    return out


@settings(settings.get_profile("parity-fast"))
@given(rows_=rows())
def test_a_row_scores_the_same_through_every_entry_point(parity_model, rows_, tmp_path_factory):
    _check_parity(parity_model, rows_, tmp_path_factory)


@pytest.mark.slow
@settings(settings.get_profile("parity-fast"), max_examples=120, derandomize=False)
@given(rows_=rows())
def test_many_rows_score_the_same_through_every_entry_point(parity_model, rows_, tmp_path_factory):
    _check_parity(parity_model, rows_, tmp_path_factory)


def _check_parity(parity_model, rows_, tmp_path_factory) -> None:
    model, scorer, keras_model, client = parity_model
    tmp = tmp_path_factory.mktemp("rows")
    scores = _score_via_files(scorer, rows_, tmp)
    frame = read_raw(tmp / "rows.csv", scorer.dataset_schema)[HEADER]
    scores["keras"] = keras_model.anomaly_score(frame)
    body = [_json(r) for r in rows_]
    one = [client.post("/v1/score", json={"transactions": [b]}) for b in body]
    assert all(r.status_code == 200 for r in one), [r.text for r in one]
    scores["rest-one"] = np.array([r.json()["results"][0]["score"] for r in one])
    order = np.random.default_rng(len(body)).permutation(len(body))
    batch = client.post("/v1/score", json={"transactions": [body[i] for i in order]})
    assert batch.status_code == 200, batch.text
    shuffled = np.array([r["score"] for r in batch.json()["results"]])
    scores["rest-batch"] = shuffled[np.argsort(order)]
    inputs = [
        {"name": "amount", "shape": [len(body)], "datatype": "FP64", "data": [b["amount"] for b in body]},
        {"name": "balance", "shape": [len(body)], "datatype": "FP64", "data": [b["balance"] for b in body]},
        {"name": "mcc", "shape": [len(body)], "datatype": "BYTES", "data": [b["mcc"] for b in body]},
        {"name": "attempts", "shape": [len(body)], "datatype": "BYTES", "data": [b["attempts"] for b in body]},
        {"name": "is_weekend", "shape": [len(body)], "datatype": "BOOL", "data": [b["is_weekend"] for b in body]},
        {"name": "ts", "shape": [len(body)], "datatype": "BYTES", "data": [b["ts"] for b in body]},
    ]
    v2 = client.post(f"/v2/models/{model.name}/infer", json={"inputs": inputs})
    assert v2.status_code == 200, v2.text
    scores["v2"] = np.asarray(v2.json()["outputs"][0]["data"])
    base = scores["csv"]
    assert len(base) == len(rows_) and np.isfinite(base).all()
    for name, s in scores.items():
        np.testing.assert_allclose(s, base, rtol=RTOL, err_msg=f"{name} differs from score --data CSV")


@pytest.mark.slow
def test_spark_scores_generated_rows_as_the_runtime_does(parity_model, tmp_path, monkeypatch):
    """The Spark path on many generated rows (a Spark session costs seconds: one check of many
    rows drawn from the same strategy, instead of one session per example)."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    from aedetect.serving.spark import score

    model, scorer, _, _ = parity_model
    flat = []

    @settings(max_examples=40, derandomize=True, database=None)
    @given(rows_=rows())
    def collect(rows_):
        flat.extend(rows_)

    collect()
    expected = _score_via_files(scorer, flat, tmp_path)["csv"]
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # workers run this Python, where aedetect is
    spark = (SparkSession.builder.master("local[2]").appName("aedetect-parity")
             .config("spark.ui.enabled", "false").getOrCreate())
    try:
        df = spark.read.csv(str(tmp_path / "rows.csv"), header=True, inferSchema=False)
        out = score(df, model, top_k=0).toPandas()
    finally:
        spark.stop()
    np.testing.assert_allclose(out["score"].to_numpy(dtype="float64"), expected, rtol=RTOL)
