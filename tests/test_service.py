"""The REST service: routes, validation errors, limits, API-key auth, health, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.errors import ArtifactError
from aedetect.serving.app import ServiceSettings, create_app

FEATURES = list(CREDITCARD.features)


@pytest.fixture(scope="module")
def rows():
    return generate_transactions(200, 0.05, seed=9)[FEATURES]


@pytest.fixture(scope="module")
def client(model_dir):
    return TestClient(create_app(model_dir, ServiceSettings(max_batch=50, max_body_bytes=64_000)))


def _tx(rows, n, start=0):
    return [dict(r) for r in rows.iloc[start:start + n].to_dict("records")]


def test_score_matches_detector(client, detector, rows):
    txs = _tx(rows, 20)
    txs[0]["id"] = "card-1"
    r = client.post("/v1/score", json={"transactions": txs})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = detector.anomaly_score(rows.iloc[:20])
    got = np.array([res["score"] for res in body["results"]])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert body["threshold"] == pytest.approx(detector.threshold_)
    assert [res["flag"] for res in body["results"]] == list(expected > detector.threshold_)
    assert body["results"][0]["id"] == "card-1" and body["results"][1]["id"] is None
    names, per_column = detector.preprocessor_.column_contributions(
        detector.feature_contributions(rows.iloc[:1]))
    top = body["results"][0]["top_features"]
    assert len(top) == 3 and top[0]["feature"] == names[per_column[0].argmax()]
    assert top[0]["reason"].startswith(top[0]["feature"] + "=")


@pytest.mark.parametrize("change,field,msg", [
    ({"V3": "abc"}, "V3", "valid number"),
    ({"Amount": None}, "Amount", "valid number"),
    ({"Amount": float("inf")}, "Amount", "finite"),
    ({"V99": 1.0}, "V99", "Extra inputs"),
])
def test_bad_transaction_gives_422_with_field(client, rows, change, field, msg):
    tx = {**_tx(rows, 1)[0], **change}
    r = client.post("/v1/score", content=json.dumps({"transactions": [tx]}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"][-1] == field and msg in detail["msg"]


def test_missing_field_and_batch_limits(client, rows):
    tx = _tx(rows, 1)[0]
    del tx["V7"]
    r = client.post("/v1/score", json={"transactions": [tx]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "V7"
    r = client.post("/v1/score", json={"transactions": _tx(rows, 51)})
    assert r.status_code == 422 and "at most 50" in r.json()["detail"][0]["msg"]
    assert client.post("/v1/score", json={"transactions": []}).status_code == 422


def test_body_size_limit(client, rows):
    big = {"transactions": _tx(rows, 50), "pad": "x" * 70_000}
    r = client.post("/v1/score", json=big)
    assert r.status_code == 413 and "64000" in r.json()["detail"]


def test_health_model_and_metrics(client, rows):
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["input_schema"]["feature_names"] == FEATURES
    assert "history" not in info["training"] and "data_file" not in info["metadata"]
    client.post("/v1/score", json={"transactions": _tx(rows, 5)})
    text = client.get("/metrics").text
    assert 'aedetect_requests_total{route="/v1/score",status="200"}' in text
    assert "aedetect_request_latency_seconds_bucket" in text
    assert "aedetect_transactions_scored_total" in text


def test_api_key(model_dir, rows, monkeypatch):
    monkeypatch.setenv("AEDETECT_TEST_KEY", "s3cret")
    c = TestClient(create_app(model_dir, ServiceSettings(api_key_env="AEDETECT_TEST_KEY")))
    body = {"transactions": _tx(rows, 1)}
    assert c.post("/v1/score", json=body).status_code == 401
    assert c.post("/v1/score", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.get("/v1/model").status_code == 401
    assert c.post("/v1/score", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # health checks need no key
    assert "s3cret" not in c.get("/v1/model", headers={"X-API-Key": "s3cret"}).text


def test_bad_model_folder_stops_startup(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    with open(broken / "model.keras", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ArtifactError, match="sha256"):
        create_app(broken)
    with pytest.raises(ArtifactError, match="no such model folder"):
        create_app(tmp_path / "nowhere")


def test_service_start_reads_the_model_folder_once(model_dir, monkeypatch):
    """The manifest is parsed and every file hashed once per start (the model, the drift
    reference and the routes share one opened folder)."""
    from aedetect.store import folder as store_folder

    calls = []
    read = store_folder.read_manifest
    monkeypatch.setattr(store_folder, "read_manifest", lambda p: calls.append(p) or read(p))
    with TestClient(create_app(model_dir)) as c:
        assert c.get("/healthz").status_code == 200
    assert len(calls) == 1


def test_an_id_beyond_64_bits_is_echoed_back(client, rows):
    """Ids may be any integer; the fast JSON encoder stops at 64 bits, so such an answer goes
    through the standard one (schemathesis found it)."""
    tx = {**_tx(rows, 1)[0], "id": 2**70}
    r = client.post("/v1/score", json={"transactions": [tx]})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["id"] == 2**70


def test_a_worker_process_puts_its_start_up_objects_out_of_the_collectors_reach(model_dir, monkeypatch):
    """`app_from_env` (each worker of `serve --workers N`) freezes what start-up built, so a full
    collection in the middle of a request does not walk the modules and the model again."""
    import gc
    import json

    from aedetect.serving.app import SERVE_ENV, ServiceSettings, app_from_env

    monkeypatch.setenv(SERVE_ENV, json.dumps({"model": str(model_dir), "settings": ServiceSettings().model_dump()}))
    gc.unfreeze()
    try:
        app_from_env()
        assert gc.get_freeze_count() > 10_000  # the modules, the app and the model, at least
    finally:
        gc.unfreeze()  # the test process's objects go back to the collector
