"""The open inference protocol (KServe V2), with requests written from the protocol's spec."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.serving.app import ServiceSettings, create_app
from aedetect.serving.runtime import load_scorer

FEATURES = list(CREDITCARD.features)


@pytest.fixture(scope="module")
def client(model_dir):
    return TestClient(create_app(model_dir, ServiceSettings(max_batch=50)))


@pytest.fixture(scope="module")
def rows():
    return generate_transactions(40, 0.2, seed=5)[FEATURES]


def test_health_metadata_and_ready(client, model_dir):
    name = model_dir.name
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get(f"/v2/models/{name}").json()
    assert meta["name"] == name and meta["platform"] == "aedetect"
    assert [t["name"] for t in meta["inputs"]] == FEATURES
    assert {t["datatype"] for t in meta["inputs"]} == {"FP64"}
    assert meta["outputs"] == [{"name": "score", "datatype": "FP64", "shape": [-1]},
                               {"name": "flag", "datatype": "BOOL", "shape": [-1]}]
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    r = client.get("/v2/models/other")
    assert r.status_code == 404 and "'other' is not served here" in r.json()["error"]


def test_infer_named_column_tensors(client, model_dir, rows):
    scorer = load_scorer(model_dir)
    request = {  # as in the protocol's "Inference Request Examples": one tensor per input
        "id": "42",
        "inputs": [{"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()}
                   for c in FEATURES],
    }
    r = client.post(f"/v2/models/{model_dir.name}/infer", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == model_dir.name and body["id"] == "42"
    score, flag = body["outputs"]
    expected = scorer.anomaly_score(rows)
    assert score["name"] == "score" and score["datatype"] == "FP64" and score["shape"] == [len(rows)]
    np.testing.assert_allclose(score["data"], expected, rtol=1e-12)
    assert flag == {"name": "flag", "datatype": "BOOL", "shape": [len(rows)],
                    "data": (expected > scorer.threshold_).tolist()}
    assert 0 < sum(flag["data"]) < len(rows)


def test_infer_one_matrix_tensor_nested_or_flat(client, model_dir, rows):
    x = rows.to_numpy()
    expected = load_scorer(model_dir).anomaly_score(x)
    for data in (x.tolist(), x.reshape(-1).tolist()):  # nested, and flat row-major
        request = {"inputs": [{"name": "input-0", "shape": list(x.shape), "datatype": "FP64", "data": data}],
                   "outputs": [{"name": "score"}]}
        r = client.post(f"/v2/models/{model_dir.name}/infer", json=request)
        assert r.status_code == 200, r.text
        (out,) = r.json()["outputs"]
        assert out["name"] == "score"
        np.testing.assert_allclose(out["data"], expected, rtol=1e-12)


def _matrix(x, **change):
    return {"inputs": [{"name": "input-0", "shape": list(np.shape(x)), "datatype": "FP64",
                        "data": np.asarray(x).tolist(), **change}]}


@pytest.mark.parametrize("make,status,message", [
    (lambda x: _matrix(x[:, :5]), 400, "the model takes [n, 30]"),
    (lambda x: _matrix(x, shape=[3, 30]), 400, "needs 90 values"),
    (lambda x: _matrix(x, datatype="BYTES"), 400, "is not numeric"),
    (lambda x: _matrix([["abc"] * 30]), 400, "'abc' is not a number"),
    (lambda x: _matrix([[True] * 30]), 400, "True is not a number"),
    (lambda x: _matrix(np.zeros((51, 30))), 400, "1 to 50 rows; got 51"),
    (lambda x: {"inputs": [{"name": "Time", "shape": [2], "datatype": "FP64", "data": [0, 1]}]}, 400,
     "missing ['V1'"),
    (lambda x: {**_matrix(x), "outputs": [{"name": "reason"}]}, 400, "outputs ['reason'] are unknown"),
    (lambda x: {"inputs": []}, 400, "invalid request: inputs"),
    (lambda x: {"input": []}, 400, "invalid request"),
])
def test_bad_requests_get_protocol_errors(client, model_dir, rows, make, status, message):
    r = client.post(f"/v2/models/{model_dir.name}/infer", json=make(rows.to_numpy()[:2]))
    assert r.status_code == status
    assert set(r.json()) == {"error"} and message in r.json()["error"]


def test_non_finite_value_is_refused(client, model_dir, rows):
    x = rows.to_numpy()[:2]
    body = _matrix(x)
    text = json.dumps(body).replace(str(x[1, 3]), "Infinity", 1)
    r = client.post(f"/v2/models/{model_dir.name}/infer", content=text,
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json() == {
        "error": "column 'V3', row 2: value inf is not a finite number"}


def test_model_routes_need_the_key_when_set(model_dir, monkeypatch):
    monkeypatch.setenv("AEDETECT_V2_TEST_KEY", "s3cret")
    client = TestClient(create_app(model_dir, ServiceSettings(api_key_env="AEDETECT_V2_TEST_KEY")))
    assert client.get("/v2/health/ready").status_code == 200  # probes need no key
    r = client.get(f"/v2/models/{model_dir.name}")
    assert r.status_code == 401 and "API key" in r.json()["error"]
    assert client.get(f"/v2/models/{model_dir.name}", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/v2").status_code == 401  # the server metadata, as the model routes
    assert client.get("/v2", headers={"X-API-Key": "s3cret"}).json()["extensions"] == ["binary_tensor_data"]


def test_a_tensor_name_given_twice_is_a_400_naming_it(client, model_dir, rows):
    inputs = [{"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()}
              for c in FEATURES]
    inputs.append({**inputs[3], "data": [0.0] * len(rows)})  # V3 again: neither may silently win
    r = client.post(f"/v2/models/{model_dir.name}/infer", json={"inputs": inputs})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == ("inputs: tensor name 'V3' appears more than once (inputs 3 and 30); "
                                 "give each column one tensor")
