"""The REST service: a FastAPI app factory over one verified model folder.

Routes: `POST /v1/score` (one or many transactions, typed by the model's input schema),
`GET /healthz`, `GET /v1/model` (the manifest, without local paths), `GET /metrics`
(Prometheus text) and the open inference protocol under `/v2` (`aedetect.serving.v2`). The
model is the NumPy runtime (`aedetect.serving.runtime`): the service never imports TensorFlow. It loads
once in `create_app`; a folder that fails verification raises `ArtifactError` there, so the
server never starts with a bad model. When the environment variable named by `api_key_env` is
set, every route except the health routes needs that key in the `X-API-Key` header (compared in
constant time).

`GET /v1/drift` and the drift gauges in `/metrics`: see `aedetect.monitoring.service`.

Contract: the OpenAPI document declares every status a route can answer (400, 401, 411, 413,
422, 503); numbers and ids are strict (a boolean is neither); under overload a scoring request
(`/v1/score` or V2 inference: they share the slots and the queue) that cannot start within
`queue_timeout_s` is refused at once with 503 and `Retry-After`, so the latency of accepted
requests stays bounded instead of growing with the backlog. Rows scored by either route are
counted in `/metrics` and feed the drift window; requests are counted by route template
(`route_label`).
"""


import asyncio
import hmac
import math
import os
import re
import sys
import threading
import time
from contextlib import asynccontextmanager
from operator import attrgetter
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model
from starlette.requests import ClientDisconnect

from aedetect.data.values import MAX_ABS_VALUE, strptime_pattern
from aedetect.errors import AedetectError, DataError
from aedetect.monitoring.service import install_drift
from aedetect.serving.explain import top_columns
from aedetect.store.folder import ModelFolder, open_folder

API_KEY_HEADER = "X-API-Key"
INLINE_ROWS = 16  # requests of up to this many transactions are scored on the event loop


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(1000, ge=1, description="most transactions in one request")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted")
    api_key_env: str = Field("AEDETECT_API_KEY", description="environment variable with the key")
    top_k: int = Field(3, ge=0, description="top contributing features per transaction")
    drift_window: int = Field(10_000, ge=100, description="latest scored rows kept for drift gauges")
    public_docs: bool = Field(False, description="serve /docs and /openapi.json without the key")
    max_concurrent: int = Field(2, ge=1, description="scoring requests computed at once")
    max_queue: int = Field(16, ge=0, description="scoring requests waiting for a slot")
    queue_timeout_s: float = Field(0.25, gt=0, description="longest wait for a slot before a 503")
    history_state: str | None = Field(None, description="Parquet file keeping the entity history "
                                      "across restarts (models with history features)")
    history_save_s: float = Field(60.0, gt=0, description="seconds between saves of history_state")
    alerts: str | None = Field(None, description="review store URL: flagged transactions of "
                               "/v1/score become alerts there, written in the background")


class Problem(BaseModel):
    detail: str


class InvalidField(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    detail: list[InvalidField]


class Health(BaseModel):
    status: str
    features: int
    threshold: float


class FeatureContribution(BaseModel):
    feature: str  # an input column
    contribution: float  # its share of the score (its preprocessed features summed)
    reason: str | None = None  # the column and its value, e.g. "merchant_category='jewelry' (unseen)"


class ScoreResult(BaseModel):
    id: str | int | None = None
    score: float
    flag: bool
    top_features: list[FeatureContribution]


class ScoreResponse(BaseModel):
    threshold: float
    results: list[ScoreResult]


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr | StrictInt = Field(description="the transaction's id, as it was sent to /v1/score")
    label: Literal[0, 1] = Field(description="1 fraud, 0 normal")


class LabelsResponse(BaseModel):
    updated: int = Field(description="stored transactions that took their label")
    not_held: list[str | int] = Field(description="ids the history does not hold: never scored with "
                                      "that id, or older than the label delay plus the longest label window")


_FIELD_TYPES = {"numeric": float, "integer": float, "boolean": bool, "categorical": str,
                "datetime": "datetime"}


def transaction_model(feature_names: list[str], limits=None, schema=None, nullable=(),
                      history=None) -> type[BaseModel]:
    """A pydantic model with one field per input column, plus an optional id.

    Without a dataset schema every column is a required finite float. With one, each field has
    its column's type: numbers, booleans, categories as strings (or integer codes, read as text),
    datetimes as text (read by the schema's date format, as every reader does; see
    `aedetect.data.values`) or seconds since 1970; the `nullable` columns (where the
    model reads a gap) may be null, though not omitted; the schema's other columns (ids, the label, excluded ones)
    are accepted and not read. `limits`: (lowest, highest) accepted value per column
    (`Preprocessor.limits`), so the schema states exactly what the model scores. Numbers are
    strict: a boolean is not a number, nor an id. `history`: the columns entity history reads
    beside the features (`history_store.history_inputs`), required and not null: an entity id
    (non-empty text or an integer), the time, the amount.
    """
    history = history or {}
    lo, hi = limits if limits is not None else ([-MAX_ABS_VALUE] * len(feature_names),
                                                 [MAX_ABS_VALUE] * len(feature_names))
    specs = {c.name: c for c in schema.feature_columns} if schema is not None else {}
    fields = {}
    for j, c in enumerate(schema.columns if schema is not None else []):
        if c.name in history:
            # an entity id: empty text is no id (as an empty cell in a file)
            kind = {"category": Annotated[StrictStr, Field(min_length=1)] | StrictInt,
                    "number": float}.get(history[c.name])
            extra = {"allow_inf_nan": False, "ge": -MAX_ABS_VALUE, "le": MAX_ABS_VALUE,
                     "strict": True} if kind is float else {}
            fields[f"h{j}"] = (kind or _datetime_field(c)[0], Field(
                alias=c.name, description="read by entity history", **extra))
        elif c.name not in specs and c.name != "id":
            fields[f"k{j}"] = (Any, Field(None, alias=c.name, description="not read by the model"))
    for i, name in enumerate(feature_names):
        spec = specs.get(name)
        kind = _FIELD_TYPES[spec.type] if spec is not None else float
        if spec is not None and spec.role == "time" and spec.type != "datetime":
            kind = float
        if kind is float:
            extra = {"allow_inf_nan": False, "ge": float(lo[i]), "le": float(hi[i]), "strict": True}
        elif kind is bool:
            extra = {"strict": True}
        elif kind is str:  # a category: text, or an integer code such as an MCC (read as its text)
            kind, extra = StrictStr | StrictInt, {}
        elif kind == "datetime":  # parsed by the one date reader, not by pydantic's rules
            kind, extra = _datetime_field(spec)
        else:
            extra = {}
        # Every column is required; a nullable one may be null (a gap the model imputes), but an
        # omitted field is a 422 naming it, never read as a gap (docs/serving.md).
        fields[f"f{i}"] = (kind | None if name in nullable else kind, Field(alias=name, **extra))
    fields["id"] = (StrictStr | StrictInt | None, Field(None, description="echoed back in the result"))
    return create_model("Transaction", __config__=ConfigDict(extra="forbid", populate_by_name=False),
                        **fields)


def _add_schemas(app: FastAPI, schemas: dict) -> None:
    """Put `schemas` into the components of the app's OpenAPI document when it is built."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            build().setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return app.openapi_schema

    app.openapi = openapi


class _Json(JSONResponse):
    """JSON encoded by orjson (a 1,000-transaction answer in about a tenth of the time)."""

    def render(self, content) -> bytes:
        import orjson

        try:
            return orjson.dumps(content)
        except TypeError:  # what orjson cannot write (an id beyond 64 bits): the standard encoder
            return super().render(content)


def _read_body(model: type[BaseModel], raw: bytes, content_type: str | None):
    """A request body read as FastAPI reads a model parameter (JSON when the Content-Type is
    JSON or absent; the same 422 on a bad value), but parsed and validated in one pass by
    pydantic: FastAPI decodes the JSON into Python objects first, then validates those, about
    twice the time on 1,000 transactions."""
    from pydantic import ValidationError

    kind = (content_type or "application/json").split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
            return model.model_validate_json(raw)
        return model.model_validate(raw)  # not JSON: refused as FastAPI refuses it (not an object)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _column(values: list) -> np.ndarray:
    """One column of a request's transactions: numbers or booleans as such, anything else
    (text, integer category codes, gaps) as Python objects, never coerced to one another."""
    arr = np.asarray(values)
    return arr if arr.dtype.kind in "fb" else np.array(values, dtype=object)


def _datetime_field(spec) -> tuple[Any, dict]:
    """A datetime column's field: text in its format (or ISO 8601), or seconds since 1970."""
    fmt = f" in the format {spec.format}" if spec.format else " (ISO 8601)"
    text = Annotated[StrictStr, Field(json_schema_extra={"pattern": strptime_pattern(spec.format)}
                                      if spec.format else {"format": "date-time"})]
    bound = Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)
    seconds = Annotated[StrictFloat, bound] | Annotated[StrictInt, bound]
    return text | seconds, {"description": f"a date/time{fmt}, or seconds since 1970"}


# Route labels of /metrics: each route by its path template; anything else (404s...) is "other".
_V2_ROUTES = [(re.compile(r"/v2/models/[^/]+/infer"), "/v2/models/{name}/infer"),
              (re.compile(r"/v2/models/[^/]+/ready"), "/v2/models/{name}/ready"),
              (re.compile(r"/v2/models/[^/]+"), "/v2/models/{name}")]
_PLAIN_ROUTES = {"/v1/score", "/v1/labels", "/v1/model", "/healthz", "/metrics", "/v2", "/v2/health/live",
                 "/v2/health/ready"}
SCORING_ROUTES = ("/v1/score", "/v2/models/{name}/infer")  # behind the back-pressure gate


def route_label(path: str) -> str:
    """The `route` label of a request path in /metrics (a bounded set: never a raw path)."""
    if path in _PLAIN_ROUTES:
        return path
    for pattern, label in _V2_ROUTES:
        if pattern.fullmatch(path):
            return label
    return "other"


class _Gate:
    """At most `slots` scoring requests at once and `queue` waiting, each at most `timeout` s.

    A request that finds the queue full, or waits longer than `timeout`, is refused at once
    (503 + Retry-After) rather than held: under overload the accepted requests keep their
    latency and the client learns to back off.
    """

    def __init__(self, slots: int, queue: int, timeout: float):
        self.slots, self.queue, self.timeout = slots, queue, timeout
        self._sem: asyncio.Semaphore | None = None
        self.waiting = 0

    async def enter(self) -> bool:
        if self._sem is None:  # created inside the server's event loop
            self._sem = asyncio.Semaphore(self.slots)
        if self._sem.locked() and self.waiting >= self.queue:
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.timeout)
            return True
        except (asyncio.TimeoutError, TimeoutError):
            return False
        finally:
            self.waiting -= 1

    def leave(self) -> None:
        self._sem.release()


class _Limits:
    """Body limits, the scoring gate and the request metrics, as plain ASGI (Starlette's
    BaseHTTPMiddleware runs each request in a task of its own with streams between: a large
    part of a one-transaction request's cost).

    A POST needs a Content-Length (411) within `max_body_bytes` (413); the scoring routes pass
    the gate or get a 503 with Retry-After. Every request is counted and timed by route template
    and status."""

    def __init__(self, app, settings: ServiceSettings, gate: _Gate, metrics: dict):
        self.app, self.settings, self.gate, self.m = app, settings, gate, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, route = time.perf_counter(), route_label(scope["path"])
        status = [500]  # what the app answered; 500 if it raised before answering

        async def sent(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope, route)
            if refusal is not None:
                await refusal(scope, receive, sent)
            elif scope["method"] == "POST" and route in SCORING_ROUTES:  # they share the slots and the queue
                if await self.gate.enter():
                    try:
                        await self.app(scope, receive, sent)
                    finally:
                        self.gate.leave()
                else:
                    retry = max(1, math.ceil(self.settings.queue_timeout_s))
                    await JSONResponse({_error_key(route): "the service is at capacity; retry later"}, 503,
                                       headers={"Retry-After": str(retry)})(scope, receive, sent)
            else:
                await self.app(scope, receive, sent)
        finally:
            self.m["requests"].labels(route, str(status[0])).inc()
            self.m["latency"].labels(route, str(status[0])).observe(time.perf_counter() - start)

    def _refusal(self, scope, route: str) -> JSONResponse | None:
        """411 or 413 for a POST whose Content-Length is missing or over the limit."""
        if scope["method"] != "POST":
            return None
        length = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
        if length is None or not length.isdigit():
            return JSONResponse({_error_key(route): "a Content-Length header is required"}, 411)
        if int(length) > self.settings.max_body_bytes:
            return JSONResponse({_error_key(route): f"request body of {length} bytes exceeds the limit of "
                                 f"{self.settings.max_body_bytes}"}, 413)
        return None


def _error_key(route: str) -> str:
    """The open inference protocol's errors are {"error": message}; /v1's are {"detail": ...}."""
    return "error" if route.startswith("/v2") else "detail"


def _problems(*codes: int, ref: bool = False) -> dict:
    """OpenAPI entries for the error answers. `ref`: spell the JSON body out, for a route whose
    own answers are not JSON (FastAPI would document its errors with the route's media type)."""
    described = {400: "malformed request body", 401: "missing or wrong API key",
                 404: "not found", 411: "Content-Length header missing", 413: "request body too large",
                 422: "invalid request: the field and the reason",
                 503: "overloaded: retry after the Retry-After seconds"}
    if ref:
        return {c: {"description": described[c], "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{'ValidationProblem' if c == 422 else 'Problem'}"}}}}
            for c in codes}
    return {c: {"model": ValidationProblem if c == 422 else Problem, "description": described[c]}
            for c in codes}


def _metrics(registry: CollectorRegistry) -> dict:
    """The service's counters and latency histogram, shown in `registry`. Under several worker
    processes (`aedetect serve --workers`, which sets PROMETHEUS_MULTIPROC_DIR) each worker
    writes them to that folder and /metrics shows their sums over the workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
        registry = None  # the workers' files are the values; not this process's again
    return {
        "requests": Counter("aedetect_requests", "HTTP requests", ["route", "status"],
                            registry=registry),
        # by status too: under overload the accepted requests' latency is read apart from the 503s'
        "latency": Histogram("aedetect_request_latency_seconds", "request latency", ["route", "status"],
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                             registry=registry),
        "scored": Counter("aedetect_transactions_scored", "transactions scored", registry=registry),
        "flagged": Counter("aedetect_transactions_flagged", "transactions flagged",
                           registry=registry),
    }


SERVE_ENV = "AEDETECT_SERVE"  # the model folder and settings of `app_from_env`, as JSON


def app_from_env() -> FastAPI:
    """The app of one worker process of `aedetect serve --workers N` (uvicorn imports this by
    name in each worker): the model folder and settings the command put in `SERVE_ENV`."""
    import json

    spec = json.loads(os.environ[SERVE_ENV])
    app = create_app(spec["model"], ServiceSettings.model_validate(spec["settings"]))
    settle_heap()
    return app


def settle_heap() -> None:
    """Put everything a serving process holds once started (modules, the model, the app) out of
    the garbage collector's reach (`gc.freeze`). Otherwise each full collection walks all of it:
    one fell, every few 1,000-transaction requests, in the middle of a request, and made their
    p90 3 times their median (docs/performance.md). Collections still run, over the objects
    created since. The cost: a start-up object that later becomes garbage in a reference cycle
    is not freed (reference counting still frees the rest), so at most what start-up built."""
    import gc

    gc.collect()
    gc.freeze()


def _public_manifest(manifest) -> dict:
    d = manifest.model_dump()
    d["metadata"] = {k: v for k, v in d.get("metadata", {}).items() if k not in ("data_file",)}
    d["training"] = {k: v for k, v in d["training"].items() if k != "history"}
    return d


def create_app(model_dir: str | os.PathLike | ModelFolder, settings: ServiceSettings | None = None) -> FastAPI:
    from aedetect.serving.history_store import history_inputs, open_history
    from aedetect.serving.runtime import open_scorer

    settings = settings or ServiceSettings()
    folder = open_folder(model_dir)  # the manifest is read and every file hashed once
    det = open_scorer(folder)  # raises ArtifactError: the server does not start
    names = list(det.feature_names_in_)
    table_model = getattr(det, "schema", None) is not None
    history = open_history(det, settings.history_state)  # None: a model without entity history
    given = [c for c in names if history is None or c not in history.schema.computed_features]
    lo, hi = det.preprocessor_.limits()
    Transaction = transaction_model(given, (lo[:len(given)], hi[:len(given)]),
                                    det.dataset_schema if table_model else None,
                                    det.preprocessor_.nullable_columns if table_model else (),
                                    history_inputs(det.dataset_schema) if history is not None else None)
    ScoreRequest = create_model(
        "ScoreRequest", __config__=ConfigDict(extra="forbid"),
        transactions=(list[Transaction], Field(min_length=1, max_length=settings.max_batch)))
    api_key = os.environ.get(settings.api_key_env) or None
    registry = CollectorRegistry()
    m = _metrics(registry)

    alerts = _alert_writer(settings.alerts, det, folder, registry) if settings.alerts else None
    app = FastAPI(title="aedetect", version=folder.manifest.versions.get("aedetect", ""),
                  docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=_lifespan(history, settings, alerts))
    app.state.detector, app.state.settings, app.state.api_key = det, settings, api_key
    app.state.history, app.state.alerts = history, alerts
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
    gate = _Gate(settings.max_concurrent, settings.max_queue, settings.queue_timeout_s)
    app.state.gate = gate

    def require_key(key: str | None = Security(header)) -> None:
        if key is None or not hmac.compare_digest(key.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong API key in the {API_KEY_HEADER} header",
                                headers={"WWW-Authenticate": "ApiKey"})

    # Without a key, no route declares one (a declared but ignored key misleads clients).
    guarded = [Depends(require_key)] if api_key else []
    auth = (401,) if api_key else ()
    docs_guard = [] if settings.public_docs else guarded
    drift = install_drift(app, folder, registry, guarded, settings.drift_window,  # /v1/drift
                          responses=_problems(*auth, 404))

    app.add_middleware(_Limits, settings=settings, gate=gate, metrics=m)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Field and reason only: echoing the input back could hold non-JSON values (Infinity).
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, 422)

    @app.exception_handler(DataError)
    async def refused_values(request: Request, exc: DataError) -> JSONResponse:
        # A value the model cannot score (see Preprocessor.limits): refused with the reason,
        # never answered with a null score.
        return JSONResponse({"detail": [{"loc": ["body", "transactions"], "msg": str(exc),
                                         "type": "value_error"}]}, 422)

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_guard)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs_guard)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="aedetect")

    @app.get("/redoc", include_in_schema=False, dependencies=docs_guard)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="aedetect")

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok", features=len(names), threshold=det.threshold_)

    @app.get("/v1/model", dependencies=guarded, responses=_problems(*auth))
    def model_info() -> dict:
        info = _public_manifest(folder.manifest)
        if history is not None:  # where the entity history continues from, and a gap before the first request
            info["history_state"] = {"source": history.source, "rows": len(history),
                                     "gap_warning": history.gap_warning}
        return info

    @app.get("/metrics", dependencies=guarded, response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}, **_problems(*auth, ref=True)})
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    schema = det.dataset_schema if history is not None else None
    history_fields = {c.name: f"h{j}" for j, c in enumerate(schema.columns)
                      if c.name in history_inputs(schema)} if schema is not None else {}

    # The body is read by `_read_body`, so the request model goes into the OpenAPI document
    # by hand, under its name, as FastAPI would put it there.
    request_schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    _add_schemas(app, {"ScoreRequest": request_schema, **request_schema.pop("$defs", {})})

    if history is not None and history.label_windows:
        LabelsRequest = create_model(
            "LabelsRequest", __config__=ConfigDict(extra="forbid"),
            labels=(list[Verdict], Field(min_length=1, max_length=settings.max_batch)))

        @app.post("/v1/labels", response_model=LabelsResponse, dependencies=guarded,
                  responses=_problems(400, *auth, 411, 413, 422))
        def labels(body: LabelsRequest) -> LabelsResponse:
            """Verdicts on transactions the service scored (by id): the label-based risk of later
            transactions counts them once the label delay has passed."""
            updated, not_held = history.set_labels({v.id: v.label for v in body.labels})
            return LabelsResponse(updated=updated, not_held=not_held)

    @app.post("/v1/score", response_model=ScoreResponse, dependencies=guarded,
              responses=_problems(400, *auth, 411, 413, 422, 503),
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/ScoreRequest"}}}}})
    async def score(request: Request) -> JSONResponse:
        try:
            raw = await request.body()
        except ClientDisconnect:  # gone before its body arrived: nothing to answer (FastAPI: a 400)
            return JSONResponse({"detail": "the client closed the connection before the whole body"}, 400)
        body = _read_body(ScoreRequest, raw, request.headers.get("content-type"))
        # A few transactions take well under a millisecond: computed on the event loop, with no
        # hop to a worker thread and no handing the GIL to and fro with the loop on every NumPy
        # or Arrow call (under 16 keep-alive clients that ping-pong cost more than the scoring).
        # A larger request goes to the thread pool, so the loop keeps answering meanwhile; so does
        # every request of a history model, which may wait for the entity store's lock.
        if len(body.transactions) <= INLINE_ROWS and history is None:
            return compute(body)
        return await run_in_threadpool(compute, body)

    def compute(body) -> _Json:
        if table_model:  # the columns as arrays: the preprocessor reads a mapping of columns
            x = {name: _column(list(map(attrgetter(f"f{i}"), body.transactions))) for i, name in enumerate(given)}
        else:
            row = attrgetter(*(f"f{i}" for i in range(len(names))))
            x = np.array(list(map(row, body.transactions)), dtype="float64").reshape(len(body.transactions), -1)
        if history is None:
            return respond(body, x, *det.score_matrix(x))
        import pandas as pd

        x = pd.DataFrame(x)
        read = pd.DataFrame({c: [getattr(t, a) for t in body.transactions] for c, a in history_fields.items()})
        with history.pending(pd.concat([x, read], axis=1), [t.id for t in body.transactions]) as features:
            x = pd.concat([x, features], axis=1)[names]
            scored = det.score_matrix(x)  # the rows are stored once they scored
        return respond(body, x, *scored)

    def respond(body, x, scores: np.ndarray, contrib: np.ndarray) -> _Json:
        flags = scores > det.threshold_
        if settings.top_k:
            top_n, top_e, top_r = top_columns(det.preprocessor_, x, contrib, settings.top_k)
        m["scored"].inc(len(scores))
        m["flagged"].inc(int(flags.sum()))
        if alerts is not None and flags.any():
            keep_alerts(body, x, scores, flags, (top_n, top_e, top_r) if settings.top_k else None)
        # as the model reads them (a dict of arrays: no DataFrame to build)
        drift.observe(det.preprocessor_.canonical(x, frame=False) if table_model else x, scores)
        # ScoreResponse's shape as plain JSON: every value is built here from checked numbers
        # and text, so validating it again (FastAPI does for a returned model) would only cost.
        if not np.isfinite(scores).all():  # never a null score in the answer
            raise DataError(f"a score is not finite ({scores[~np.isfinite(scores)][0]}): the model cannot score "
                            "these values")
        tops = (zip(top_n.tolist(), top_e.tolist(), top_r.tolist(), strict=True) if settings.top_k
                else (([], [], []) for _ in scores))
        results = [
            {"id": t.id, "score": s, "flag": f,
             "top_features": [{"feature": n, "contribution": e, "reason": r} for n, e, r in zip(*top, strict=True)]}
            for t, s, f, top in zip(body.transactions, scores.tolist(), flags.tolist(), tops, strict=True)
        ]
        return _Json({"threshold": det.threshold_, "results": results})

    def keep_alerts(body, x, scores, flags, top) -> None:
        """Hand the flagged transactions to the background writer (never waits on the database)."""
        derived = history.schema.history_features if history is not None else []
        found = []
        for i in np.flatnonzero(flags):
            t = body.transactions[i]
            row = {"id": t.id, **{n: getattr(t, f"f{j}") for j, n in enumerate(given)},
                   **{c: getattr(t, a) for c, a in history_fields.items()}}
            reasons = [] if top is None else [
                {"feature": str(n), "reason": str(r), "contribution": float(e)}
                for n, e, r in zip(top[0][i], top[1][i], top[2][i], strict=True)]
            past = {c: x[c].iat[i] for c in derived} if derived else None
            found.append((row, float(scores[i]), reasons, t.id, past))  # made into an alert off this thread
        alerts.put(found)

    from aedetect.serving.v2 import create_v2_router

    def on_scored(x, scores: np.ndarray, flags: np.ndarray) -> None:
        m["scored"].inc(len(x))
        m["flagged"].inc(int(flags.sum()))
        drift.observe(det.preprocessor_.canonical(x) if table_model else x, scores)  # as /v1/score does

    from aedetect import __version__

    # The open inference protocol, model named after its folder: /v2/models/<folder name>/infer
    app.include_router(create_v2_router(det, folder.path.name, max_rows=settings.max_batch,
                                        auth=require_key if api_key else None, on_scored=on_scored,
                                        history=history, server_version=__version__))
    return app


class _AlertCounts:
    """The alert writer's counts in /metrics (read when scraped)."""

    def __init__(self, writer):
        self.writer = writer

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        w = self.writer
        yield CounterMetricFamily("aedetect_alerts_written", "alerts written to the review store", value=w.written)
        yield CounterMetricFamily("aedetect_alerts_duplicate", "flagged transactions already in the store",
                                  value=w.duplicates)
        yield CounterMetricFamily("aedetect_alert_write_failures", "failed writes to the review store "
                                  "(the alerts stay queued and are retried)", value=w.failures)
        yield CounterMetricFamily("aedetect_alerts_queue_full", "alerts that found the writer's queue full "
                                  "(kept aside, written next)", value=w.full)
        yield GaugeMetricFamily("aedetect_alerts_pending", "alerts waiting to be written", value=w.pending)


def _alert_writer(url: str, det, folder: ModelFolder, registry: CollectorRegistry):
    """The background writer of `serve --alerts`, its source (the model's name, version,
    threshold, amount and entity columns) and its counts in /metrics."""
    from aedetect.review.alerts import source_for
    from aedetect.review.store import AlertStore
    from aedetect.review.writer import AlertWriter

    writer = AlertWriter(AlertStore(url), source_for(det, folder.path))
    registry.register(_AlertCounts(writer))
    return writer


def _lifespan(history, settings: ServiceSettings, alerts):
    """The app's lifespan: save the history every `history_save_s` seconds (when it changed)
    and once more on a clean shutdown; on shutdown, write the alerts still queued."""
    path = settings.history_state if history is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()

        def every() -> None:
            while not stop.wait(settings.history_save_s):
                if history.changes:
                    try:
                        history.save(path)
                    except AedetectError as exc:  # e.g. the disk is full: try again next time
                        print(f"warning: {exc}", file=sys.stderr, flush=True)

        saver = threading.Thread(target=every, name="aedetect-history-save", daemon=True)
        if path is not None:
            saver.start()
        try:
            yield
        finally:
            stop.set()
            if path is not None:
                saver.join()
                history.save(path)
            if alerts is not None:
                alerts.close()

    return lifespan
