"""The open inference protocol (KServe V2 / Triton REST), so the service drops into KServe or Seldon.

Routes (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/):
`GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2/models/{name}` (metadata),
`GET /v2/models/{name}/ready`, `POST /v2/models/{name}/infer`.

An inference request gives the raw columns either as one tensor per column (named like the
column, shape `[n]` or `[n, 1]`) or as one tensor of shape `[n, n_features]` in the model's
column order (see the metadata). Numbers are FP64, FP32 or an integer type (`data` flat in
row-major order or nested). A model trained on a team's own table (a dataset schema) takes one
tensor per column: BYTES (strings) for category columns, BYTES (ISO 8601) or a number (seconds
since 1970) for datetimes, numbers for the rest; `null` is a missing value, scored where the
model imputes gaps. The reply holds `score` (FP64 `[n]`) and `flag` (BOOL `[n]`), or
the ones the request's `outputs` names. Errors are `{"error": "<message>"}` with status 400 (a
bad request), 404 (another model name) or 401 (API key), as the protocol specifies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from aedetect.errors import DataError

NUMERIC = ("FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16",
           "UINT8")
OUTPUTS = {"score": "FP64", "flag": "BOOL"}


class V2Error(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _ErrorsAsProtocol(APIRoute):
    """Every error of these routes as the protocol's `{"error": message}` (FastAPI's is `detail`)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except V2Error as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            except HTTPException as exc:
                return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)
            except RequestValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(p) for p in first["loc"] if p != "body")
                return JSONResponse({"error": f"invalid request: {loc}: {first['msg']}"}, 400)

        return route


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = []
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


def _values(t: RequestInput) -> list:
    """A tensor's data flattened in row-major order, any element type, shape checked."""
    out, stack = [], [t.data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    if any(d < 0 for d in t.shape) or math.prod(t.shape) != len(out):
        raise V2Error(f"input {t.name!r}: shape {t.shape} needs {math.prod(t.shape)} values; "
                      f"data holds {len(out)}")
    return out


def _typed_column(t: RequestInput, kind: str) -> list:
    """One column of a schema model: strings for categories, strings or numbers for
    datetimes, numbers for the rest; None (JSON null) is a missing value."""
    if len(t.shape) == 2 and t.shape[1] != 1:
        raise V2Error(f"input {t.name!r}: shape {t.shape}; a column tensor has shape [n] or [n, 1]")
    values = _values(t)
    if kind == "category":
        if t.datatype != "BYTES":
            raise V2Error(f"input {t.name!r}: datatype {t.datatype!r}; a category column is BYTES")
        bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int, float)))]
        # a number is read as category text by the one rule (7 and 7.0 -> "7"; see data/values.py)
    elif kind == "datetime":
        if t.datatype != "BYTES" and t.datatype not in NUMERIC:
            raise V2Error(f"input {t.name!r}: datatype {t.datatype!r}; a datetime column is BYTES "
                          "(ISO 8601) or a number (seconds since 1970)")
        want = str if t.datatype == "BYTES" else (int, float)
        bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, want))]
    elif kind == "boolean" and t.datatype == "BOOL":
        bad = [v for v in values if v is not None and not isinstance(v, bool)]
        values = [np.nan if v is None else float(v) for v in values]
    else:
        if t.datatype not in NUMERIC:
            want = "BOOL or numeric" if kind == "boolean" else "not numeric"
            raise V2Error(f"input {t.name!r}: datatype {t.datatype!r} is {want} "
                          f"({', '.join(NUMERIC)})" if kind != "boolean" else
                          f"input {t.name!r}: datatype {t.datatype!r}; a boolean column is BOOL "
                          "(or a number, 1 or 0)")
        bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
        values = [np.nan if v is None else v for v in values]
    if bad:
        raise V2Error(f"input {t.name!r}: {bad[0]!r} does not fit datatype {t.datatype}")
    return values


def inputs_by_name(req: InferenceRequest) -> dict[str, RequestInput]:
    """The request's input tensors by name; a name given twice is a 400 naming it (neither
    tensor silently wins)."""
    by_name: dict[str, RequestInput] = {}
    for i, t in enumerate(req.inputs):
        if t.name in by_name:
            first = next(j for j, u in enumerate(req.inputs) if u.name == t.name)
            raise V2Error(f"inputs: tensor name {t.name!r} appears more than once (inputs {first} "
                          f"and {i}); give each column one tensor")
        by_name[t.name] = t
    return by_name


def table_from_request(req: InferenceRequest, names: list[str], kinds: list[str], max_rows: int):
    """The feature table a request describes, for a model with a dataset schema (one tensor per
    column; the preprocessor reads each by its type)."""
    import pandas as pd

    by_name = inputs_by_name(req)
    missing = [c for c in names if c not in by_name]
    extra = [t.name for t in req.inputs if t.name not in names]
    if missing or extra:
        raise V2Error(f"inputs: missing {missing}, unknown {extra}; give one tensor per column {names}")
    cols = {c: _typed_column(by_name[c], k) for c, k in zip(names, kinds, strict=True)}
    lengths = sorted({len(v) for v in cols.values()})
    if len(lengths) != 1:
        raise V2Error(f"inputs: the column tensors differ in length {lengths}")
    if lengths[0] == 0 or lengths[0] > max_rows:
        raise V2Error(f"a request holds 1 to {max_rows} rows; got {lengths[0]}")
    return pd.DataFrame({c: pd.Series(v, dtype="float64" if k in ("number", "boolean") else object)
                         for (c, v), k in zip(cols.items(), kinds, strict=True)})


def input_kinds(scorer) -> list[str] | None:
    """Per column "category", "datetime" or "number" for a schema model; None otherwise."""
    if getattr(scorer, "schema", None) is None:
        return None
    return scorer.preprocessor_.input_kinds


def _tensor(t: RequestInput) -> np.ndarray:
    if t.datatype not in NUMERIC:
        raise V2Error(f"input {t.name!r}: datatype {t.datatype!r} is not numeric ({', '.join(NUMERIC)})")
    values = _values(t)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise V2Error(f"input {t.name!r}: {bad[0]!r} is not a number")
    return np.asarray(values, dtype="float64").reshape(t.shape)


def features_from_request(req: InferenceRequest, names: list[str], max_rows: int) -> np.ndarray:
    """The [n, n_features] float64 matrix a request describes, in the model's column order."""
    d = len(names)
    if len(req.inputs) == 1 and len(req.inputs[0].shape) == 2:
        t = req.inputs[0]
        if t.shape[1] != d:
            raise V2Error(f"input {t.name!r}: shape {t.shape}; the model takes [n, {d}] (columns {names})")
        x = _tensor(t)
    else:
        by_name = inputs_by_name(req)
        missing = [c for c in names if c not in by_name]
        extra = [t.name for t in req.inputs if t.name not in names]
        if missing or extra:
            raise V2Error(f"inputs: missing {missing}, unknown {extra}; give one tensor per column "
                          f"{names} or one tensor of shape [n, {d}]")
        cols = []
        for c in names:
            t = by_name[c]
            if len(t.shape) == 2 and t.shape[1] != 1:
                raise V2Error(f"input {c!r}: shape {t.shape}; a column tensor has shape [n] or [n, 1]")
            cols.append(_tensor(t).reshape(-1))
        if len({len(v) for v in cols}) != 1:
            raise V2Error(f"inputs: the column tensors differ in length {sorted({len(v) for v in cols})}")
        x = np.stack(cols, axis=1)
    if len(x) == 0 or len(x) > max_rows:
        raise V2Error(f"a request holds 1 to {max_rows} rows; got {len(x)}")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise V2Error(f"column {names[c]!r}, row {r + 1}: value {x[r, c]} is not a finite number")
    return x


def create_v2_router(scorer, model_name: str, *, max_rows: int = 1000, auth: Callable | None = None,
                     on_scored: Callable[[int, int], None] | None = None, history=None) -> APIRouter:
    """The V2 routes for one model. `auth`: a FastAPI dependency guarding the model routes (the
    health routes stay open for probes); `on_scored(rows, flagged)`: e.g. metrics counters;
    `history`: the service's `HistoryStore` for a model with entity history features (the
    request gives the columns it reads instead of the history columns, which are computed)."""
    names = list(scorer.feature_names_in_)
    kinds = input_kinds(scorer)
    if history is not None:  # the history columns come last; the entity, time and amount are given
        from aedetect.serving.history_store import history_inputs

        derived = history.schema.history_features
        kinds = kinds[:len(names) - len(derived)]
        names = names[:len(names) - len(derived)]
        extra = history_inputs(history.schema)
        names, kinds = names + list(extra), kinds + list(extra.values())
    guarded = [Depends(auth)] if auth is not None else []
    router = APIRouter(prefix="/v2", tags=["open inference protocol (V2)"], route_class=_ErrorsAsProtocol)
    metadata = ModelMetadata(
        name=model_name, platform="aedetect",
        inputs=[TensorMetadata(name=c, datatype="BOOL" if kinds and kinds[i] == "boolean" else
                               "BYTES" if kinds and kinds[i] != "number" else "FP64",
                               shape=[-1]) for i, c in enumerate(names)],
        outputs=[TensorMetadata(name=k, datatype=v, shape=[-1]) for k, v in OUTPUTS.items()])

    def check_name(name: str) -> None:
        if name != model_name:
            raise V2Error(f"model {name!r} is not served here; this server serves {model_name!r}", 404)

    @router.get("/health/live")
    def live() -> dict:
        return {"live": True}

    @router.get("/health/ready")
    def ready() -> dict:
        return {"ready": True}  # the model loads before the app exists

    errors = {404: {"description": "another model name: `{\"error\": message}`"}}
    if auth is not None:
        errors[401] = {"description": "missing or wrong API key"}

    @router.get("/models/{name}", response_model=ModelMetadata, dependencies=guarded, responses=errors)
    def model_metadata(name: str) -> ModelMetadata:
        check_name(name)
        return metadata

    @router.get("/models/{name}/ready", dependencies=guarded, responses=errors)
    def model_ready(name: str) -> dict:
        check_name(name)
        return {"name": name, "ready": True}

    @router.post("/models/{name}/infer", response_model=InferenceResponse, response_model_exclude_none=True,
                 dependencies=guarded,
                 responses={**errors, 400: {"description": 'a bad request: `{"error": message}`'},
                            411: {"description": "Content-Length header missing"},
                            413: {"description": "request body too large"}})
    def infer(name: str, body: InferenceRequest) -> InferenceResponse:  # sync: runs off the loop
        check_name(name)
        wanted = [o.name for o in body.outputs] if body.outputs else list(OUTPUTS)
        unknown = [w for w in wanted if w not in OUTPUTS]
        if unknown:
            raise V2Error(f"outputs {unknown} are unknown; this model returns {list(OUTPUTS)}")
        if kinds is None:
            x = features_from_request(body, names, max_rows)
        else:
            x = table_from_request(body, names, kinds, max_rows)
        try:
            if history is None:
                scores = scorer.anomaly_score(x)
            else:
                with history.pending(x) as features:  # the rows are stored once they scored
                    scores = scorer.anomaly_score(x.join(features))
        except DataError as exc:  # a value the model cannot read (a gap it does not impute...)
            raise V2Error(str(exc)) from None
        flags = scores > scorer.threshold_
        if on_scored is not None:
            on_scored(len(x), int(flags.sum()))
        data = {"score": scores.tolist(), "flag": flags.tolist()}
        return InferenceResponse(model_name=model_name, id=body.id, outputs=[
            ResponseOutput(name=w, shape=[len(x)], datatype=OUTPUTS[w], data=data[w]) for w in wanted])

    return router
