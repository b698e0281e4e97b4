"""The REST service: a FastAPI app factory over one verified model folder.

Routes: `POST /v1/score` (one or many transactions, typed by the model's input schema),
`GET /healthz`, `GET /v1/model` (the manifest, without local paths), `GET /metrics`
(Prometheus text) and the open inference protocol under `/v2` (`aedetect.protocol_v2`). The
model is the NumPy runtime (`aedetect.runtime`): the service never imports TensorFlow. It loads
once in `create_app`; a folder that fails verification raises `ArtifactError` there, so the
server never starts with a bad model. When the environment variable named by `api_key_env` is
set, every route except the health routes needs that key in the `X-API-Key` header (compared in
constant time).

`GET /v1/drift` and the drift gauges in `/metrics`: see `aedetect.monitor_service`.
"""


import hmac
import os
import time
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, create_model

from aedetect.data.schema import MAX_ABS_VALUE
from aedetect.errors import DataError
from aedetect.monitor_service import install_drift
from aedetect.runtime import top_features

API_KEY_HEADER = "X-API-Key"


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(1000, ge=1, description="most transactions in one request")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted")
    api_key_env: str = Field("AEDETECT_API_KEY", description="environment variable with the key")
    top_k: int = Field(3, ge=0, description="top contributing features per transaction")
    drift_window: int = Field(10_000, ge=100, description="latest scored rows kept for drift gauges")


class FeatureContribution(BaseModel):
    feature: str
    contribution: float  # this feature's share of the score


class ScoreResult(BaseModel):
    id: str | int | None = None
    score: float
    flag: bool
    top_features: list[FeatureContribution]


class ScoreResponse(BaseModel):
    threshold: float
    results: list[ScoreResult]


def transaction_model(feature_names: list[str]) -> type[BaseModel]:
    """A pydantic model with one required finite float per input column, plus an optional id."""
    fields = {f"f{i}": (float, Field(alias=name, allow_inf_nan=False, ge=-MAX_ABS_VALUE,
                                     le=MAX_ABS_VALUE))
              for i, name in enumerate(feature_names)}
    fields["id"] = (str | int | None, Field(None, description="echoed back in the result"))
    return create_model("Transaction", __config__=ConfigDict(extra="forbid", populate_by_name=False),
                        **fields)


def _metrics(registry: CollectorRegistry) -> dict:
    return {
        "requests": Counter("aedetect_requests", "HTTP requests", ["route", "status"],
                            registry=registry),
        "latency": Histogram("aedetect_request_latency_seconds", "request latency", ["route"],
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                             registry=registry),
        "scored": Counter("aedetect_transactions_scored", "transactions scored", registry=registry),
        "flagged": Counter("aedetect_transactions_flagged", "transactions flagged",
                           registry=registry),
    }


def _public_manifest(manifest) -> dict:
    d = manifest.model_dump()
    d["metadata"] = {k: v for k, v in d.get("metadata", {}).items() if k not in ("data_file",)}
    d["training"] = {k: v for k, v in d["training"].items() if k != "history"}
    return d


def create_app(model_dir: str | os.PathLike, settings: ServiceSettings | None = None) -> FastAPI:
    from aedetect.artifact import read_manifest
    from aedetect.runtime import load_scorer

    settings = settings or ServiceSettings()
    if "hybrid.json" in read_manifest(Path(model_dir)).files:  # a supervised head needs its model
        from aedetect.hybrid import load_model

        det = load_model(Path(model_dir))
    else:
        det = load_scorer(Path(model_dir))  # NumPy runtime; raises ArtifactError: the server does not start
    names = list(det.feature_names_in_)
    Transaction = transaction_model(names)
    ScoreRequest = create_model(
        "ScoreRequest", __config__=ConfigDict(extra="forbid"),
        transactions=(list[Transaction], Field(min_length=1, max_length=settings.max_batch)))
    api_key = os.environ.get(settings.api_key_env) or None
    registry = CollectorRegistry()
    m = _metrics(registry)

    app = FastAPI(title="aedetect", version=det.manifest_.versions.get("aedetect", ""))
    app.state.detector, app.state.settings, app.state.api_key = det, settings, api_key
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    def require_key(key: str | None = Security(header)) -> None:
        if api_key is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong API key in the {API_KEY_HEADER} header",
                                headers={"WWW-Authenticate": "ApiKey"})

    drift = install_drift(app, model_dir, registry, require_key, settings.drift_window)  # /v1/drift

    @app.middleware("http")
    async def limit_and_measure(request: Request, call_next):
        route, start = request.url.path, time.perf_counter()
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                response = JSONResponse({"detail": "a Content-Length header is required"}, 411)
            elif int(length) > settings.max_body_bytes:
                response = JSONResponse({"detail": f"request body of {length} bytes exceeds the "
                                         f"limit of {settings.max_body_bytes}"}, 413)
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        known = route if route in ("/v1/score", "/v1/model", "/healthz", "/metrics") else "other"
        m["requests"].labels(known, str(response.status_code)).inc()
        m["latency"].labels(known).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Field and reason only: echoing the input back could hold non-JSON values (Infinity).
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, 422)

    @app.exception_handler(DataError)
    async def refused_values(request: Request, exc: DataError) -> JSONResponse:
        # A value inside the field bounds that the model still cannot score (see
        # Preprocessor.limits): refused with the reason, never answered with a null score.
        return JSONResponse({"detail": [{"loc": ["body", "transactions"], "msg": str(exc),
                                         "type": "value_error"}]}, 422)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "features": len(names), "threshold": det.threshold_}

    @app.get("/v1/model", dependencies=[Depends(require_key)])
    def model_info() -> dict:
        return _public_manifest(det.manifest_)

    @app.get("/metrics", dependencies=[Depends(require_key)])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/score", response_model=ScoreResponse, dependencies=[Depends(require_key)])
    def score(body: ScoreRequest) -> ScoreResponse:  # sync: runs in the thread pool, off the loop
        x = np.array([[getattr(t, f"f{i}") for i in range(len(names))] for t in body.transactions])
        scores, contrib = det.score_matrix(x)
        flags = scores > det.threshold_
        if settings.top_k:
            top_n, top_e = top_features(contrib, det.feature_names_out_, settings.top_k)
        m["scored"].inc(len(x))
        m["flagged"].inc(int(flags.sum()))
        drift.observe(x, scores)
        results = [
            ScoreResult(id=t.id, score=float(s), flag=bool(f), top_features=[
                FeatureContribution(feature=n, contribution=float(e)) for n, e in zip(top_n[i], top_e[i], strict=True)
            ] if settings.top_k else [])
            for i, (t, s, f) in enumerate(zip(body.transactions, scores, flags, strict=True))
        ]
        return ScoreResponse(threshold=det.threshold_, results=results)

    from aedetect.protocol_v2 import create_v2_router

    def on_scored(rows: int, flagged: int) -> None:
        m["scored"].inc(rows)
        m["flagged"].inc(flagged)

    # The open inference protocol, model named after its folder: /v2/models/<folder name>/infer
    app.include_router(create_v2_router(det, Path(model_dir).name, max_rows=settings.max_batch,
                                        auth=require_key, on_scored=on_scored))
    return app
