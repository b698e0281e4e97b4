"""The open inference protocol driven by Triton's own client, `tritonclient.http`, unmodified and
with its defaults (binary tensors, no Content-Type header), against the service run by uvicorn
on a free port: a numbers-only model, a model trained the way `aedetect train` trains one (a
dataset schema: categories, a datetime, numbers with gaps) and a schema model whose columns are
all numbers (as `aedetect demo` makes). Scores are compared with `aedetect score` (`score_file`)
on the same rows written to a CSV."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

import aedetect
from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transaction_log, generate_transactions
from aedetect.serving.app import ServiceSettings, create_app
from aedetect.serving.batch import score_file
from aedetect.serving.runtime import load_scorer

FEATURES = list(CREDITCARD.features)
RTOL = 1e-9
INFER = "/v2/models/{name}/infer"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
NO_KEY = "AEDETECT_UNSET_KEY"


@contextlib.contextmanager
def serving(model, **settings):
    """The service of `model` run by uvicorn in a thread; yields (host:port, app)."""
    app = create_app(model, ServiceSettings(api_key_env=NO_KEY, **settings))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-v2-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def triton(url: str, **kwargs):
    client = httpclient.InferenceServerClient(url, **kwargs)
    try:
        yield client
    finally:
        client.close()


def aedetect_score(model, rows: pd.DataFrame, tmp: Path) -> np.ndarray:
    """`aedetect score --model MODEL --data rows.csv`: the scores, in row order."""
    csv, out = tmp / "rows.csv", tmp / "scored.parquet"
    rows.to_csv(csv, index=False)
    score_file(load_scorer(model), csv, out, top_k=0)
    scored = pd.read_parquet(out).sort_values("row")
    assert len(scored) == len(rows)
    return scored["score"].to_numpy()


def tensor(name: str, values: np.ndarray, datatype: str, binary: bool = True) -> httpclient.InferInput:
    t = httpclient.InferInput(name, list(values.shape), datatype)
    t.set_data_from_numpy(values, binary_data=binary)
    return t


def column_tensors(meta: dict, rows: pd.DataFrame, binary: bool = True) -> list:
    """One tensor per input the model metadata lists: BYTES text ("" where missing), FP64 (NaN
    where missing)."""
    out = []
    for t in meta["inputs"]:
        col = rows[t["name"]]
        if t["datatype"] == "BYTES":
            data = col.astype(object).where(col.notna(), "").map(str).to_numpy(dtype=object)
        else:
            data = col.to_numpy(dtype="float64")
        out.append(tensor(t["name"], data, t["datatype"], binary))
    return out


def raw_outputs(result) -> dict:
    return {o["name"]: o for o in result.get_response()["outputs"]}


# -- models and their servers -----------------------------------------------------------------
@pytest.fixture(scope="module")
def numbers_model(model_with_reference, tmp_path_factory):
    """conftest's numbers-only model (no dataset schema), with a drift reference, in a folder
    named `numbers` (the V2 model name)."""
    import shutil

    assert getattr(load_scorer(model_with_reference), "schema", None) is None
    return shutil.copytree(model_with_reference, tmp_path_factory.mktemp("v2-numbers") / "numbers")


def _train(table: pd.DataFrame, schema, out: Path):
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    det = train_detector(table, TrainConfig(epochs=1, hidden_units=[16, 4, 16], batch_size=64), schema).detector
    return det.save(out)


@pytest.fixture(scope="module")
def tx_model(tmp_path_factory):
    """A model trained as `aedetect train` trains one on a team's own table (inferred schema)."""
    from aedetect.data.infer import infer_schema

    table = generate_transaction_log(1500, 0.03, seed=4)
    return _train(table, infer_schema(table), tmp_path_factory.mktemp("v2-tx") / "tx")


@pytest.fixture(scope="module")
def cc_model(tmp_path_factory):
    """A schema model whose columns are all numbers: the credit-card schema `aedetect demo` uses."""
    return _train(generate_transactions(3000, 0.01, seed=3), CREDITCARD, tmp_path_factory.mktemp("v2-cc") / "cc")


@pytest.fixture(scope="module")
def numbers_url(numbers_model):
    with serving(numbers_model) as (url, _):
        yield url


@pytest.fixture(scope="module")
def tx_url(tx_model):
    with serving(tx_model) as (url, _):
        yield url


@pytest.fixture(scope="module")
def cc_url(cc_model):
    with serving(cc_model) as (url, _):
        yield url


@pytest.fixture(scope="module")
def numbers_rows():
    return generate_transactions(40, 0.2, seed=5)[FEATURES]


@pytest.fixture(scope="module")
def tx_rows():
    """Rows of the same kind of table with gaps: a category (device) and numbers
    (device_age_days, account_age_days)."""
    rows = generate_transaction_log(200, 0.05, seed=11).head(60).drop(columns=["is_fraud", "fraud_kind"])
    rows = rows.reset_index(drop=True)
    rows.loc[[0, 5, 9], "device"] = None
    rows.loc[[1, 5], "account_age_days"] = np.nan
    assert rows["device"].isna().sum() >= 3 and rows["device_age_days"].isna().any()
    return rows


# -- 1. server metadata, model metadata, readiness ---------------------------------------------
def test_server_and_model_metadata_and_readiness(numbers_url, tx_url, tx_model):
    with triton(numbers_url) as client:
        assert client.get_server_metadata() == {"name": "aedetect", "version": aedetect.__version__,
                                                "extensions": ["binary_tensor_data"]}
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("numbers") and not client.is_model_ready("other")
        meta = client.get_model_metadata("numbers")
        assert [t["name"] for t in meta["inputs"]] == FEATURES
        with pytest.raises(InferenceServerException, match="'other' is not served here"):
            client.get_model_metadata("other")
    with triton(tx_url) as client:
        meta = client.get_model_metadata("tx")
    types = {t["name"]: t["datatype"] for t in meta["inputs"]}
    assert list(types) == list(load_scorer(tx_model).feature_names_in_)
    assert types["timestamp"] == "BYTES" and types["device"] == "BYTES" and types["amount"] == "FP64"


# -- 1. binary and JSON tensors, binary and JSON outputs ----------------------------------------
OUTPUT_CHOICES = {
    "default": None,  # tritonclient then asks binary_data_output: every output in binary
    "binary": [("score", True), ("flag", True)],
    "json": [("score", False), ("flag", False)],
    "mixed": [("score", False), ("flag", True)],
}


def _outputs(choice):
    spec = OUTPUT_CHOICES[choice]
    return None if spec is None else [httpclient.InferRequestedOutput(n, binary_data=b) for n, b in spec]


def _check_reply(result, choice, expected, threshold):
    raw = raw_outputs(result)
    for name, binary in OUTPUT_CHOICES[choice] or [("score", True), ("flag", True)]:
        assert ("binary_data_size" in raw[name].get("parameters", {})) is binary, raw[name]
        assert ("data" in raw[name]) is not binary
    scores, flags = result.as_numpy("score"), result.as_numpy("flag")
    assert scores.dtype == np.float64 and flags.dtype == bool and scores.shape == expected.shape
    np.testing.assert_allclose(scores, expected, rtol=RTOL)
    np.testing.assert_array_equal(flags, expected > threshold)


@pytest.mark.parametrize("choice", list(OUTPUT_CHOICES))
@pytest.mark.parametrize("binary", [True, False], ids=["binary-inputs", "json-inputs"])
def test_numbers_model_scores_as_aedetect_score(numbers_url, numbers_model, numbers_rows, tmp_path,
                                                binary, choice):
    """One tensor per column, and one [n, 30] tensor; inputs in binary (tritonclient's default)
    or JSON, which the client sends without a Content-Type header."""
    expected = aedetect_score(numbers_model, numbers_rows, tmp_path)
    threshold = load_scorer(numbers_model).threshold_
    with triton(numbers_url) as client:
        meta = client.get_model_metadata("numbers")
        per_column = client.infer("numbers", column_tensors(meta, numbers_rows, binary), outputs=_outputs(choice))
        _check_reply(per_column, choice, expected, threshold)
        matrix = tensor("input-0", numbers_rows.to_numpy(dtype="float64"), "FP64", binary)
        _check_reply(client.infer("numbers", [matrix], outputs=_outputs(choice), request_id="r-1"), choice,
                     expected, threshold)
        assert client.infer("numbers", [matrix], request_id="r-1").get_response()["id"] == "r-1"


def test_fp32_and_integer_tensors(numbers_url, numbers_model, numbers_rows):
    scorer = load_scorer(numbers_model)
    x32 = numbers_rows.to_numpy(dtype="float32")
    with triton(numbers_url) as client:
        got = client.infer("numbers", [tensor("x", x32, "FP32")]).as_numpy("score")
        np.testing.assert_allclose(got, scorer.anomaly_score(x32.astype("float64")), rtol=RTOL)
        ints = np.rint(numbers_rows.to_numpy()).astype("int64")
        got = client.infer("numbers", [tensor("x", ints, "INT64")]).as_numpy("score")
        np.testing.assert_allclose(got, scorer.anomaly_score(ints.astype("float64")), rtol=RTOL)


# -- 1, 3. a schema model: typed columns, gaps ---------------------------------------------------
@pytest.mark.parametrize("choice", ["default", "json"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary-inputs", "json-inputs"])
def test_schema_model_typed_columns_with_gaps_score_as_aedetect_score(tx_url, tx_model, tx_rows, tmp_path,
                                                                      binary, choice):
    expected = aedetect_score(tx_model, tx_rows, tmp_path)
    with triton(tx_url) as client:
        meta = client.get_model_metadata("tx")
        result = client.infer("tx", column_tensors(meta, tx_rows, binary), outputs=_outputs(choice))
    _check_reply(result, choice, expected, load_scorer(tx_model).threshold_)


# -- 2. datetimes as text or as seconds since 1970 -----------------------------------------------
@pytest.mark.parametrize("datatype", ["BYTES", "FP64", "INT64"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary-inputs", "json-inputs"])
def test_datetime_as_text_or_seconds_scores_as_aedetect_score(tx_url, tx_model, tx_rows, tmp_path,
                                                              datatype, binary):
    """data/values.py: a number for a datetime is seconds since 1970, on every path."""
    expected = aedetect_score(tx_model, tx_rows, tmp_path)  # the CSV holds the timestamps as text
    seconds = (pd.to_datetime(tx_rows["timestamp"]) - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    with triton(tx_url) as client:
        meta = client.get_model_metadata("tx")
        inputs = [t for t in column_tensors(meta, tx_rows, binary) if t.name() != "timestamp"]
        if datatype != "BYTES":
            values = seconds.to_numpy(dtype="float64" if datatype == "FP64" else "int64")
            inputs.append(tensor("timestamp", values, datatype, binary))
        else:
            inputs.append(tensor("timestamp", tx_rows["timestamp"].to_numpy(dtype=object), "BYTES", binary))
        got = client.infer("tx", inputs).as_numpy("score")
    np.testing.assert_allclose(got, expected, rtol=RTOL)


# -- 3. missing values in BYTES tensors ----------------------------------------------------------
def _request_body(inputs, outputs=None) -> tuple[bytes, dict]:
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    return body, ({} if json_size is None else {"Inference-Header-Content-Length": str(json_size)})


def test_empty_text_and_null_are_missing_in_bytes_tensors(tx_url, tx_model, tx_rows, tmp_path):
    """tritonclient cannot send None (it writes the text "None"): "" in JSON, a zero-length
    element in binary and JSON null are each a missing value."""
    rows = tx_rows.head(4).copy()
    rows["device"] = None  # every row without a device: the score `aedetect score` gives a gap
    expected = aedetect_score(tx_model, rows, tmp_path)
    with triton(tx_url) as client:
        meta = client.get_model_metadata("tx")
        for binary in (True, False):
            inputs = column_tensors(meta, rows, binary)
            device = next(t for t in inputs if t.name() == "device")
            body, _ = _request_body([device])
            assert (b'\x00\x00\x00\x00' * len(rows) in body) if binary else (b'"data":["","","",""]' in body)
            np.testing.assert_allclose(client.infer("tx", inputs).as_numpy("score"), expected, rtol=RTOL)
        # JSON null, from a plain HTTP client, no Content-Type either
        doc = json.loads(_request_body(column_tensors(meta, rows, binary=False))[0])
        for t in doc["inputs"]:
            if t["name"] == "device":
                t["data"] = [None] * len(rows)
        r = httpx.post(f"http://{tx_url}/v2/models/tx/infer", content=json.dumps(doc).encode())
        assert r.status_code == 200, r.text
        length = r.headers.get("Inference-Header-Content-Length")  # binary_data_output: a binary reply
        reply = httpclient.InferenceServerClient.parse_response_body(r.content, header_length=int(length))
        np.testing.assert_allclose(reply.as_numpy("score"), expected, rtol=RTOL)
        # a gap where the model reads none (the time) is a 400 the client reads
        inputs = [t for t in column_tensors(meta, rows) if t.name() != "timestamp"]
        inputs.append(tensor("timestamp", np.array([""] * len(rows), dtype=object), "BYTES"))
        with pytest.raises(InferenceServerException, match="timestamp") as err:
            client.infer("tx", inputs)
        assert err.value.status() == "400"


def test_broken_binary_data_is_a_400_the_client_reads(numbers_url, numbers_rows):
    x = numbers_rows.to_numpy(dtype="float64")
    body, headers = _request_body([tensor("input-0", x, "FP64")])
    r = httpx.post(f"http://{numbers_url}/v2/models/numbers/infer", content=body[:-8], headers=headers)
    assert r.status_code == 400 and "binary_data_size 9600 runs past the body" in r.json()["error"]
    r = httpx.post(f"http://{numbers_url}/v2/models/numbers/infer", content=body + b"\x00", headers=headers)
    assert r.status_code == 400 and "1 bytes beyond the inputs' binary_data_size" in r.json()["error"]
    r = httpx.post(f"http://{numbers_url}/v2/models/numbers/infer", content=body)  # no header: not JSON
    assert r.status_code == 400 and r.json()["error"].startswith("invalid request: the body is not JSON")


# -- 4. one [n, k] tensor for a schema model of numbers; the docs' example -----------------------
@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_one_matrix_tensor_for_a_schema_model_whose_columns_are_numbers(cc_url, cc_model, numbers_rows,
                                                                        tmp_path, datatype):
    scorer = load_scorer(cc_model)
    assert scorer.schema is not None and set(scorer.preprocessor_.input_kinds) == {"number"}
    x = numbers_rows.to_numpy(dtype=datatype.replace("FP", "float"))
    rows = pd.DataFrame(x.astype("float64"), columns=FEATURES)
    expected = aedetect_score(cc_model, rows, tmp_path)
    with triton(cc_url) as client:
        meta = client.get_model_metadata("cc")
        assert [t["name"] for t in meta["inputs"]] == FEATURES
        got = client.infer("cc", [tensor("input-0", x, datatype)]).as_numpy("score")
        np.testing.assert_allclose(got, expected, rtol=RTOL)
        per_column = client.infer("cc", column_tensors(meta, rows)).as_numpy("score")
        np.testing.assert_allclose(per_column, expected, rtol=RTOL)


def test_one_matrix_tensor_for_a_model_with_text_columns_is_a_400_naming_the_columns(tx_url, tx_rows):
    with triton(tx_url) as client, pytest.raises(InferenceServerException) as err:
        client.infer("tx", [tensor("input-0", np.zeros((2, 12)), "FP64")])
    assert err.value.status() == "400"
    assert "this model takes one tensor per column ['timestamp', 'merchant_category'" in err.value.message()


def _docs_python_example() -> str:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(r"<!-- v2-tritonclient-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/serving.md lost its tritonclient example"
    return m.group(1)


def test_the_docs_tritonclient_example_scores_as_aedetect_score(tx_url, tx_model, tx_rows, tmp_path):
    code = _docs_python_example()
    assert code.count('"localhost:8765"') == 1 and code.count('"new.csv"') == 1
    rows = tx_rows.copy()
    rows.loc[[2, 3], "merchant_category"] = None
    rows.to_csv(tmp_path / "new.csv", index=False)
    expected = aedetect_score(tx_model, rows, tmp_path)
    namespace: dict = {}
    exec(compile(code.replace('"localhost:8765"', repr(tx_url)).replace('"new.csv"', repr(str(tmp_path / "new.csv"))),
                 "docs/serving.md", "exec"), namespace)
    np.testing.assert_allclose(namespace["scores"], expected, rtol=RTOL)
    np.testing.assert_array_equal(namespace["flags"], expected > load_scorer(tx_model).threshold_)


def test_the_docs_curl_examples_answer_as_shown(tx_url, cc_url, tx_model, tmp_path):
    """The docs' JSON examples, sent as curl -d sends them (a form Content-Type): the typed
    columns of a schema model (the scores of `aedetect score` on those rows), the `[1, 30]` matrix
    of a credit-card schema model and its error example."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Open inference protocol"):]
    calls = re.findall(r"curl -s localhost:\d+/v2/models/(\w+)/infer -d '(\{.*?\})'\n# ([^\n]*)", section, re.S)
    assert [c[0] for c in calls] == ["tx", "cc", "cc"]
    urls = {"tx": tx_url, "cc": cc_url}
    for model, body, shown in calls:
        r = httpx.post(f"http://{urls[model]}/v2/models/{model}/infer", content=body.encode(),
                       headers={"content-type": "application/x-www-form-urlencoded"})
        if shown.startswith('{"error"'):
            assert r.status_code == 400
            assert r.json()["error"].startswith(json.loads(shown.split("   (HTTP")[0])["error"].split("...")[0])
            continue
        assert r.status_code == 200, r.text
        doc, sent = r.json(), json.loads(body)
        assert doc["id"] == sent["id"] and [o["name"] for o in doc["outputs"]] == ["score", "flag"]
        if model == "tx":
            rows = pd.DataFrame({t["name"]: t["data"] for t in sent["inputs"]})
            np.testing.assert_allclose(doc["outputs"][0]["data"], aedetect_score(tx_model, rows, tmp_path),
                                       rtol=RTOL)


# -- 5. drift monitoring, /metrics, back-pressure -----------------------------------------------
def _samples(url: str) -> dict:
    text = httpx.get(f"http://{url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _requests(samples: dict, route: str, status: str = "200") -> float:
    return samples.get(("aedetect_requests_total", (("route", route), ("status", status))), 0.0)


@pytest.mark.parametrize("which", ["numbers", "tx"])
def test_v2_rows_reach_drift_monitoring_and_metrics_by_their_own_route(which, numbers_url, tx_url, numbers_rows):
    url = {"numbers": numbers_url, "tx": tx_url}[which]
    rows = (generate_transactions(300, 0.01, seed=21)[FEATURES] if which == "numbers" else
            generate_transaction_log(400, 0.05, seed=21).head(300))
    before_drift = httpx.get(f"http://{url}/v1/drift").json()
    before = _samples(url)
    with triton(url) as client:
        meta = client.get_model_metadata(which)
        result = client.infer(which, column_tensors(meta, rows))
    flagged = int(result.as_numpy("flag").sum())
    assert httpx.get(f"http://{url}/v2/no-such-route").status_code == 404
    drift = httpx.get(f"http://{url}/v1/drift").json()
    assert drift["rows_seen"] == before_drift["rows_seen"] + 300
    assert drift["window_rows"] == min(before_drift["window_rows"] + 300, drift["window_size"])
    after = _samples(url)
    assert _requests(after, INFER) == _requests(before, INFER) + 1
    every_status = sum(v for (name, labels), v in after.items()
                       if name == "aedetect_requests_total" and ("route", INFER) in labels)
    timed = sum(v for (name, labels), v in after.items()
                if name == "aedetect_request_latency_seconds_count" and ("route", INFER) in labels)
    assert timed == every_status  # timed by status too: accepted and refused apart
    assert _requests(after, "other", "404") == _requests(before, "other", "404") + 1  # not mixed in
    assert _requests(after, "/v2/models/{name}") == _requests(before, "/v2/models/{name}") + 1
    assert after[("aedetect_transactions_scored_total", ())] == before[("aedetect_transactions_scored_total", ())] + 300
    assert after[("aedetect_transactions_flagged_total", ())] == \
        before[("aedetect_transactions_flagged_total", ())] + flagged


def test_v2_infer_is_behind_the_back_pressure_gate(numbers_model, numbers_rows):
    x = numbers_rows.to_numpy(dtype="float64")[:2]
    with serving(numbers_model, max_concurrent=1, max_queue=1, queue_timeout_s=0.2) as (url, app):
        det = app.state.detector
        fast = det.anomaly_score

        def slow(rows):
            time.sleep(0.5)
            return fast(rows)

        det.anomaly_score = slow
        with triton(url, concurrency=6) as client:  # tritonclient's own concurrent requests
            pending = [client.async_infer("numbers", [tensor("input-0", x, "FP64")]) for _ in range(6)]
            outcomes = []
            for p in pending:
                try:
                    outcomes.append(p.get_result().as_numpy("score").shape)
                except InferenceServerException as exc:
                    outcomes.append((exc.status(), exc.message()))
        refused = [o for o in outcomes if o == ("503", "the service is at capacity; retry later")]
        assert (2,) in outcomes and len(refused) >= 4, outcomes

        body, headers = _request_body([tensor("input-0", x, "FP64")])

        async def burst():
            async with httpx.AsyncClient(base_url=f"http://{url}") as c:
                return await asyncio.gather(*(c.post("/v2/models/numbers/infer", content=body, headers=headers)
                                              for _ in range(6)))

        answers = asyncio.run(burst())
        assert any(r.status_code == 200 for r in answers)
        for r in answers:
            if r.status_code == 503:
                assert r.headers["Retry-After"] == "1" and r.json() == {"error": "the service is at capacity; "
                                                                                 "retry later"}
        samples = _samples(url)
        assert _requests(samples, INFER, "503") >= 8
