"""The service's HTTP contract: auth on the docs, declared statuses, strict types, back-pressure,
and schemathesis (every check) against the OpenAPI document the service publishes."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import httpx
import psutil
import pytest
from contract import schemathesis_failures
from fastapi.testclient import TestClient
from servers import free_port, start_aedetect

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.serving.app import INLINE_ROWS, ServiceSettings, _Gate, create_app

FEATURES = list(CREDITCARD.features)
KEY = "s3cret"


@pytest.fixture(scope="module")
def tx():
    return {k: float(v) for k, v in generate_transactions(10, 0.0, seed=2)[FEATURES].iloc[0].items()}


@pytest.fixture(scope="module")
def keyed(model_dir):
    import os

    os.environ["AEDETECT_CONTRACT_KEY"] = KEY
    try:
        return create_app(model_dir, ServiceSettings(api_key_env="AEDETECT_CONTRACT_KEY"))
    finally:
        del os.environ["AEDETECT_CONTRACT_KEY"]


@pytest.fixture(scope="module")
def open_app(model_dir):
    return create_app(model_dir, ServiceSettings(max_batch=20, api_key_env="AEDETECT_UNSET_KEY"))


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_need_the_key_when_one_is_set(keyed, path):
    c = TestClient(keyed)
    assert c.get(path).status_code == 401
    assert c.get(path, headers={"X-API-Key": KEY}).status_code == 200
    assert c.get("/healthz").status_code == 200  # the one open route


def test_public_docs_option(model_dir, monkeypatch):
    monkeypatch.setenv("AEDETECT_CONTRACT_KEY", KEY)
    c = TestClient(create_app(model_dir, ServiceSettings(api_key_env="AEDETECT_CONTRACT_KEY",
                                                         public_docs=True)))
    assert c.get("/openapi.json").status_code == 200 and c.get("/v1/model").status_code == 401


def test_openapi_declares_every_status_and_metrics_as_text(keyed):
    doc = TestClient(keyed).get("/openapi.json", headers={"X-API-Key": KEY}).json()
    score = doc["paths"]["/v1/score"]["post"]["responses"]
    assert set(score) == {"200", "400", "401", "411", "413", "422", "503"}
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert set(doc["paths"]["/v1/model"]["get"]["responses"]) == {"200", "401"}


@pytest.mark.parametrize("field, value", [("V1", True), ("Amount", False), ("id", True)])
def test_booleans_are_neither_numbers_nor_ids(open_app, tx, field, value):
    r = TestClient(open_app).post("/v1/score", json={"transactions": [{**tx, field: value}]})
    assert r.status_code == 422 and field in r.json()["detail"][0]["loc"]


def test_integers_are_numbers_and_ids(open_app, tx):
    r = TestClient(open_app).post("/v1/score", json={"transactions": [{**tx, "V1": 1, "id": 7}]})
    assert r.status_code == 200 and r.json()["results"][0]["id"] == 7


def test_gate_refuses_when_full_and_after_timeout():
    async def scenario():
        gate = _Gate(slots=1, queue=1, timeout=0.05)
        assert await gate.enter()                      # takes the slot
        waiter = asyncio.create_task(gate.enter())     # waits in the queue...
        await asyncio.sleep(0)
        assert not await gate.enter()                  # ...so the queue is full: refused at once
        assert not await waiter                        # the waiter times out
        gate.leave()
        assert await gate.enter()
    asyncio.run(scenario())


def test_overload_gets_503_with_retry_after_and_bounded_wait(model_dir, tx, monkeypatch):
    app = create_app(model_dir, ServiceSettings(max_concurrent=1, max_queue=1, queue_timeout_s=0.2,
                                                api_key_env="AEDETECT_UNSET_KEY"))
    det = app.state.detector
    slow = det.score_matrix

    def slow_score(x):
        time.sleep(0.5)
        return slow(x)

    monkeypatch.setattr(det, "score_matrix", slow_score)

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            async def one():
                start = time.perf_counter()
                # more than INLINE_ROWS: computed in the thread pool, the loop stays free to refuse
                r = await c.post("/v1/score", json={"transactions": [tx] * (INLINE_ROWS + 1)})
                return r, time.perf_counter() - start
            return await asyncio.gather(*(one() for _ in range(6)))

    results = asyncio.run(burst())
    codes = sorted(r.status_code for r, _ in results)
    assert codes.count(200) >= 1 and codes.count(503) >= 4, codes
    for r, waited in results:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "1" and waited < 0.45  # refused without waiting long


def test_serve_reports_a_failed_bind_in_one_line(model_dir, monkeypatch, capsys):
    from aedetect.cli.app import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(sys, "argv", ["aedetect", "serve", "--model", str(model_dir),
                                          "--port", str(port)])
        with pytest.raises(SystemExit) as exit_:
            main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and f"cannot listen on 127.0.0.1:{port}" in err
    assert "serving" not in err and "Traceback" not in err


def test_the_service_socket_turns_nagle_off_on_every_connection():
    """asyncio sets TCP_NODELAY on accepted connections only when the listening socket says
    IPPROTO_TCP; `serve`'s socket (made with protocol 0 before) made keep-alive clients wait for
    the delayed ACK, about 40 ms a request."""
    from aedetect.cli.score_commands import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen = {}

    async def main():
        def accepted(reader, writer):
            seen["nodelay"] = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if "nodelay" in seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert sock.proto == socket.IPPROTO_TCP and seen["nodelay"] == 1


@pytest.mark.parametrize("with_key, examples", [
    (False, 6), (True, 4), pytest.param(False, 200, marks=pytest.mark.slow),
    pytest.param(True, 100, marks=pytest.mark.slow)])
def test_schemathesis_all_checks_pass(open_app, keyed, with_key, examples):
    app = keyed if with_key else open_app
    failures = schemathesis_failures(app, {"X-API-Key": KEY} if with_key else {}, examples)
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="module")
def table_app(tmp_path_factory):
    """The service of a model trained on a team's own table: categories, datetimes, gaps."""
    from aedetect.data.generate import generate_transaction_log
    from aedetect.data.infer import infer_schema
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    table = generate_transaction_log(1500, 0.03, seed=4)
    det = train_detector(table, TrainConfig(epochs=1, hidden_units=[16, 4, 16], batch_size=64),
                         infer_schema(table)).detector
    path = det.save(tmp_path_factory.mktemp("table-service") / "model")
    return create_app(path, ServiceSettings(max_batch=20, api_key_env="AEDETECT_UNSET_KEY"))


def test_schemathesis_all_checks_pass_on_a_schema_model(table_app):
    """The request model generated from a dataset schema (strings, datetimes, nullable
    numbers, V2 BYTES tensors) holds the same contract."""
    failures = schemathesis_failures(table_app, {}, 6)
    assert not failures, "\n\n".join(failures)


def test_omitting_a_nullable_field_is_a_422_naming_it(table_app):
    """docs/serving.md: a missing field is a 422; a nullable one may be null, not left out."""
    import json

    from aedetect.data.generate import generate_transaction_log

    client = TestClient(table_app)
    props = client.get("/openapi.json").json()["components"]["schemas"]["Transaction"]["properties"]
    nullable = [k for k, v in props.items() if k != "id" and {"type": "null"} in v.get("anyOf", [])]
    assert nullable
    row = json.loads(generate_transaction_log(100, 0.0, seed=4).head(1).to_json(orient="records"))[0]
    tx = {k: v for k, v in row.items() if k in props}
    tx[nullable[0]] = None
    assert client.post("/v1/score", json={"transactions": [tx]}).status_code == 200
    del tx[nullable[0]]
    r = client.post("/v1/score", json={"transactions": [tx]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "transactions", 0, nullable[0]]
    assert r.json()["detail"][0]["msg"] == "Field required"


def test_several_workers_answer_alike_and_metrics_sum_over_them(model_dir, tx, tmp_path, monkeypatch):
    """`serve --workers 2`: two processes on one port, each answering with the scores of the
    single-process service, and /metrics counting every request whichever worker took it (the
    workers' counts meet in PROMETHEUS_MULTIPROC_DIR: a file per worker that answered)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    port = free_port()
    proc = start_aedetect(["serve", "--model", str(model_dir), "--workers", "2"], port)
    try:
        base = f"http://127.0.0.1:{port}"
        single = TestClient(create_app(model_dir)).post("/v1/score", json={"transactions": [tx]}).json()
        scores = set()
        for _ in range(60):  # fresh connections: the kernel hands them to either worker
            with httpx.Client() as c:
                r = c.post(f"{base}/v1/score", json={"transactions": [tx]})
                assert r.status_code == 200, r.text
                scores.add(r.json()["results"][0]["score"])
        assert scores == {single["results"][0]["score"]}
        workers = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        answered = {int(f.stem.rsplit("_", 1)[1]) for f in tmp_path.glob("counter_*.db")}
        assert len(answered & workers) == 2, (answered, workers)  # both workers took requests
        line = next(x for x in httpx.get(f"{base}/metrics").text.splitlines()
                    if x.startswith('aedetect_requests_total{route="/v1/score",status="200"}'))
        assert float(line.split()[-1]) == 60.0  # summed over the workers
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, proc.stdout.read().decode()
    assert list(tmp_path.iterdir())  # a folder the user gave is kept
