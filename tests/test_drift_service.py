"""Online drift monitoring in the service: gauges move under a shifted stream, memory stays bounded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.monitoring.reference import (
    MAX_NAME_CHARS,
    Reference,
    categorical_profile,
    flagged_promise,
    load_reference,
    numeric_profile,
)
from aedetect.monitoring.service import DriftMonitor
from aedetect.serving.app import ServiceSettings, create_app
from aedetect.store.folder import read_manifest

FEATURES = list(CREDITCARD.features)
CAP = 300


@pytest.fixture(scope="module")
def client(model_with_reference):
    return TestClient(create_app(model_with_reference, ServiceSettings(drift_window=CAP, max_batch=200,
                                                                       max_body_bytes=200_000)))


def _send(client, rows):
    rows = rows.sample(frac=1.0, random_state=0)  # traffic of every hour: the reference spans the day
    for start in range(0, len(rows), 100):
        txs = rows.iloc[start:start + 100][FEATURES].to_dict("records")
        assert client.post("/v1/score", json={"transactions": txs}).status_code == 200


def _gauges(client) -> dict:
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("aedetect_drift"):
                out[(s.name, s.labels.get("column"))] = s.value
    return out


def test_reference_is_stored_and_hashed(model_with_reference):
    assert "reference.json" in read_manifest(model_with_reference).files
    ref = load_reference(model_with_reference)
    assert set(ref.columns) == set(FEATURES) and len(ref.score["sample"]) == 2000


def test_gauges_move_under_a_shifted_stream_and_memory_stays_bounded(client):
    monitor = client.app.state.drift
    assert client.get("/v1/drift").json()["status"] == "collecting"
    arrays, nbytes = [id(b) for b in monitor.buffer.columns.values()], monitor.buffer.nbytes

    _send(client, generate_transactions(2000, 0.01, seed=11))
    g = _gauges(client)
    assert g[("aedetect_drift_window_rows", None)] == CAP
    assert g[("aedetect_drift_alarm", None)] == 0 and g[("aedetect_drift_psi", "V3")] < 0.2
    calm = g[("aedetect_drift_psi", "V3")]

    shifted = generate_transactions(2000, 0.01, seed=12)
    shifted["V3"] += 2 * shifted["V3"].std()
    _send(client, shifted)
    g = _gauges(client)
    assert g[("aedetect_drift_psi", "V3")] > max(0.2, 5 * calm)
    assert g[("aedetect_drift_alarm", None)] == 1 and g[("aedetect_drift_columns_drifted", None)] >= 1
    drift = client.get("/v1/drift").json()
    assert drift["status"] == "ok" and drift["drifted_columns"][0] == "V3"
    assert drift["rows_seen"] == 4000 and drift["window_rows"] == CAP

    # bounded: the same preallocated arrays, at their cap, whatever the traffic
    assert monitor.buffer.count == CAP and monitor.buffer.nbytes == nbytes
    assert [id(b) for b in monitor.buffer.columns.values()] == arrays


def test_model_without_reference_has_no_drift_route(model_dir):
    client = TestClient(create_app(model_dir))
    r = client.get("/v1/drift")
    assert r.status_code == 404 and "no reference.json" in r.json()["detail"]
    assert "aedetect_drift" not in client.get("/metrics").text


def test_long_categories_keep_the_drift_buffer_bounded_and_few_names_echoed():
    """Issue 25.12: the drift window kept whole category strings (200 requests with a 1 MB
    category grew the service by 220 MB) and `GET /v1/drift` echoed them back. A value the
    reference does not know is now kept as at most 100 characters; a reference category, however
    long, is kept as it is so it still counts as itself."""
    known = "premium-" + "k" * 300  # a long category the model was trained on
    ref = Reference(columns={"merchant": categorical_profile(pd.Series(["shop"] * 600 + [known] * 400)),
                             "amount": numeric_profile(np.arange(1000.0))},
                    score=numeric_profile(np.arange(1000.0)), threshold=990.0,
                    flagged=flagged_promise(10, 1000))
    size, n_long = 200, 150
    monitor = DriftMonitor(ref, size=size)
    huge = [f"{i:03d}" + "x" * 50_000 for i in range(n_long)]  # distinct, 50 kB each
    merchant = ["shop"] * 30 + [known] * 20 + huge
    monitor.observe(pd.DataFrame({"merchant": merchant, "amount": np.arange(size, dtype=float)}),
                    np.arange(size, dtype=float))
    held = [v for v in monitor.buffer.columns["merchant"] if v is not None]
    assert len(held) == size and held.count(known) == 20  # a reference category is kept whole
    assert sum(len(v) for v in held if v != known) <= (size - 20) * MAX_NAME_CHARS
    drift = monitor.latest()
    col = drift["columns"]["merchant"]
    assert drift["status"] == "ok" and col["alarm"]  # 150 new names in 200 rows: drift all the same
    assert col["new_category_count"] == n_long  # distinct long names stay distinct
    assert len(col["new_categories"]) == 10 and all(len(c) <= MAX_NAME_CHARS for c in col["new_categories"])
    assert len(json.dumps(drift)) < 10_000  # what GET /v1/drift answers
