"""The open inference protocol (KServe V2 / Triton REST), so the service drops into KServe or Seldon.

Routes (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/):
`GET /v2` (server metadata), `GET /v2/health/live`, `GET /v2/health/ready`,
`GET /v2/models/{name}` (metadata), `GET /v2/models/{name}/ready`, `POST /v2/models/{name}/infer`.
Triton's own client, `tritonclient.http.InferenceServerClient`, works unmodified with its
defaults (tests/test_v2_tritonclient.py).

An inference request gives the raw columns either as one tensor per column (named like the
column, shape `[n]` or `[n, 1]`) or, for a model whose columns are all numbers, as one tensor of
shape `[n, n_features]` in the model's column order (see the metadata). Numbers are FP64, FP32
or an integer type (`data` flat in row-major order or nested). A model trained on a team's own
table (a dataset schema) takes one tensor per column: BYTES (strings) for category columns,
BYTES (text in the column's date format or ISO 8601) or a number (seconds since 1970) for
datetimes, BOOL or 1/0 for booleans, numbers for the rest. Missing values, scored where the
model imputes gaps: `null` or `""` in a BYTES tensor (a zero-length element in binary), `null`
or NaN in a numeric column tensor of a schema model. The body is read as JSON whatever its
Content-Type.

Binary tensor data extension (Triton's, which tritonclient uses by default): with the header
`Inference-Header-Content-Length: N`, the body's first N bytes are the JSON request and the
rest holds, in input order, the raw little-endian data of each input that says
`parameters.binary_data_size` (BYTES elements as a 4-byte little-endian length, then the
bytes; BOOL one byte each). An output is returned in binary when the request asks
`"binary_data": true` in its `parameters`, or, for outputs that do not say, when the request's
`parameters` hold `"binary_data_output": true`; the reply then carries the same header, the
JSON part lists such outputs with `parameters.binary_data_size` and no `data`.

The reply holds `score` (FP64 `[n]`) and `flag` (BOOL `[n]`), or the ones the request's
`outputs` names. Errors are `{"error": "<message>"}` with status 400 (a bad request), 404
(another model name) or 401 (API key), as the protocol specifies; the app's 411, 413 and 503
(at capacity, with Retry-After) for these routes too.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aedetect.errors import DataError

NUMERIC = ("FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16",
           "UINT8")
OUTPUTS = {"score": "FP64", "flag": "BOOL"}
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]  # as Triton names the extension in its server metadata
# Little-endian element types of the binary tensor data extension (BYTES is length-prefixed).
BINARY_DTYPES = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
                 "INT16": "<i2", "INT8": "i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2",
                 "UINT8": "u1", "BOOL": "?"}


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


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


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
    data: list[Any] | None = None  # None: binary data (parameters.binary_data_size) after the JSON


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


class JSONInput(RequestInput):
    """An input of a request that is all JSON (the OpenAPI document's request body): its data
    is in `data`. With the binary tensor data extension an input gives
    `parameters.binary_data_size` instead, and its bytes follow the JSON part."""

    model_config = ConfigDict(title="RequestInput")

    data: list[Any]


class JSONInferenceRequest(InferenceRequest):
    model_config = ConfigDict(title="InferenceRequest")

    inputs: list[JSONInput] = Field(min_length=1)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None  # {"binary_data_size": bytes} for a binary output
    data: list[Any] | None = None  # None for a binary output


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


def _binary_elements(t: RequestInput, raw: bytes) -> list:
    """A tensor's binary data as a flat list of Python values: numbers, booleans, or text for
    BYTES (a zero-length element is None: a missing value)."""
    if t.datatype == "BYTES":
        values, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise V2Error(f"input {t.name!r}: BYTES element {len(values)} is cut short (each element "
                              "is a 4-byte little-endian length, then that many bytes)")
            (size,) = struct.unpack_from("<I", raw, i)
            if i + 4 + size > len(raw):
                raise V2Error(f"input {t.name!r}: BYTES element {len(values)} says {size} bytes; "
                              f"{len(raw) - i - 4} remain in its binary data")
            try:
                values.append(raw[i + 4:i + 4 + size].decode("utf-8") or None)
            except UnicodeDecodeError:
                raise V2Error(f"input {t.name!r}: BYTES element {len(values)} is not UTF-8 text") from None
            i += 4 + size
        return values
    dtype = BINARY_DTYPES.get(t.datatype)
    if dtype is None:
        raise V2Error(f"input {t.name!r}: datatype {t.datatype!r} is not read here "
                      f"(BYTES, {', '.join(BINARY_DTYPES)})")
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise V2Error(f"input {t.name!r}: binary_data_size {len(raw)} is not a whole number of "
                      f"{t.datatype} elements ({width} bytes each)")
    if t.datatype == "BOOL":
        octets = np.frombuffer(raw, dtype="u1")
        if (octets > 1).any():
            raise V2Error(f"input {t.name!r}: a BOOL element is one byte, 0 or 1; got {int(octets.max())}")
        return (octets == 1).tolist()
    return np.frombuffer(raw, dtype=dtype).tolist()


def read_request(body: bytes, header_length: str | None = None,
                 content_encoding: str | None = None) -> InferenceRequest:
    """The request a body holds: JSON whatever the Content-Type; with `header_length` (the
    `Inference-Header-Content-Length` header) the JSON part, then each input's binary data
    (`parameters.binary_data_size` bytes, in input order) decoded into its `data`."""
    if content_encoding not in (None, "", "identity"):
        raise V2Error(f"Content-Encoding {content_encoding!r} is not supported; send the body uncompressed")
    if header_length is None:
        head, rest = body, b""
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise V2Error(f"{HEADER_LENGTH} {header_length!r} is not a byte count within the "
                          f"{len(body)}-byte body")
        head, rest = body[:int(header_length)], body[int(header_length):]
    try:
        doc = json.loads(head)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        part = "the JSON part of the body" if header_length is not None else "the body"
        raise V2Error(f"invalid request: {part} is not JSON ({exc})") from None
    try:
        req = InferenceRequest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise V2Error(f"invalid request: {loc + ': ' if loc else ''}{first['msg']}") from None
    offset = 0
    for t in req.inputs:
        params = t.parameters or {}
        if any(k.startswith("shared_memory") for k in params):
            raise V2Error(f"input {t.name!r}: shared memory is not supported; send the data in the request")
        size = params.get("binary_data_size")
        if size is None:
            if t.data is None:
                raise V2Error(f"input {t.name!r} has no data: give `data`, or binary data after the JSON "
                              f"with parameters.binary_data_size and the {HEADER_LENGTH} header")
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise V2Error(f"input {t.name!r}: parameters.binary_data_size {size!r} is not a byte count")
        if t.data is not None:
            raise V2Error(f"input {t.name!r}: give `data` or parameters.binary_data_size, not both")
        if offset + size > len(rest):
            where = f"{len(rest)} bytes follow the JSON part" if header_length is not None else \
                f"the request has no {HEADER_LENGTH} header, so it holds no binary data"
            raise V2Error(f"input {t.name!r}: binary_data_size {size} runs past the body ({where})")
        t.data = _binary_elements(t, rest[offset:offset + size])
        offset += size
    if offset != len(rest):
        raise V2Error(f"the body holds {len(rest) - offset} bytes beyond the inputs' binary_data_size "
                      f"(binary data of {offset} bytes)")
    return req


def requested_outputs(req: InferenceRequest) -> list[tuple[str, bool]]:
    """(output name, in binary?) for each output the reply holds: those the request names, else
    every output; binary where the output's `binary_data` says so, else where the request's
    `binary_data_output` does (tritonclient sets one or the other by default)."""
    default = (req.parameters or {}).get("binary_data_output", False)
    if not isinstance(default, bool):
        raise V2Error(f"parameters.binary_data_output {default!r} is not true or false")
    if not req.outputs:
        return [(k, default) for k in OUTPUTS]
    unknown = [o.name for o in req.outputs if o.name not in OUTPUTS]
    if unknown:
        raise V2Error(f"outputs {unknown} are unknown; this model returns {list(OUTPUTS)}")
    out = []
    for o in req.outputs:
        params = o.parameters or {}
        if params.get("classification"):
            raise V2Error(f"output {o.name!r}: classification is not supported; ask for the output itself")
        if any(k.startswith("shared_memory") for k in params):
            raise V2Error(f"output {o.name!r}: shared memory is not supported")
        binary = params.get("binary_data", default)
        if not isinstance(binary, bool):
            raise V2Error(f"output {o.name!r}: parameters.binary_data {binary!r} is not true or false")
        out.append((o.name, binary))
    return out


def encode_response(model_name: str, request_id: str | None,
                    outputs: list[tuple[str, np.ndarray, bool]]) -> Response:
    """The reply: JSON, or (when an output is binary) the JSON part, then each binary output's
    little-endian bytes, with the `Inference-Header-Content-Length` header."""
    tensors, blobs = [], []
    for name, values, binary in outputs:
        datatype = OUTPUTS[name]
        if binary:
            raw = np.ascontiguousarray(values, dtype=BINARY_DTYPES[datatype]).tobytes()
            tensors.append(ResponseOutput(name=name, shape=[len(values)], datatype=datatype,
                                          parameters={"binary_data_size": len(raw)}))
            blobs.append(raw)
        else:
            tensors.append(ResponseOutput(name=name, shape=[len(values)], datatype=datatype,
                                          data=values.tolist()))
    doc = InferenceResponse(model_name=model_name, id=request_id, outputs=tensors).model_dump(exclude_none=True)
    if not blobs:
        return JSONResponse(doc)
    header = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


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
    datetimes, numbers for the rest; None (JSON null) is a missing value, and so is "" in a
    BYTES tensor (tritonclient cannot send null: it writes None as the text "None")."""
    if len(t.shape) == 2 and t.shape[1] != 1:
        raise V2Error(f"input {t.name!r}: shape {t.shape}; a column tensor has shape [n] or [n, 1]")
    values = _values(t)
    if t.datatype == "BYTES":
        values = [None if v == "" else v for v in values]
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


def _one_matrix(req: InferenceRequest, names: list[str]) -> RequestInput | None:
    """The request's one `[n, k]` tensor (not named like a column), or None."""
    if len(req.inputs) == 1 and len(req.inputs[0].shape) == 2 and req.inputs[0].name not in names:
        return req.inputs[0]
    return None


def table_from_request(req: InferenceRequest, names: list[str], kinds: list[str], max_rows: int):
    """The feature table a request describes, for a model with a dataset schema: one tensor per
    column (the preprocessor reads each by its type), or, when every column is a number, one
    `[n, k]` tensor in the model's column order (NaN: a missing value)."""
    import pandas as pd

    matrix = _one_matrix(req, names)
    if matrix is not None:
        if any(k != "number" for k in kinds):
            raise V2Error(f"input {matrix.name!r}: one [n, k] tensor is for a model whose columns are all "
                          f"numbers; this model takes one tensor per column {names} (see its metadata)")
        if matrix.shape[1] != len(names):
            raise V2Error(f"input {matrix.name!r}: shape {matrix.shape}; the model takes [n, {len(names)}] "
                          f"(columns {names})")
        x = _tensor(matrix)
        if len(x) == 0 or len(x) > max_rows:
            raise V2Error(f"a request holds 1 to {max_rows} rows; got {len(x)}")
        return pd.DataFrame(x, columns=names)
    by_name = inputs_by_name(req)
    missing = [c for c in names if c not in by_name]
    extra = [t.name for t in req.inputs if t.name not in names]
    if missing or extra:
        matrix_too = f" or one tensor of shape [n, {len(names)}]" if all(k == "number" for k in kinds) else ""
        raise V2Error(f"inputs: missing {missing}, unknown {extra}; give one tensor per column {names}"
                      f"{matrix_too}")
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


def _inline_refs(schema: dict) -> dict:
    """A pydantic JSON schema with its `$defs` written in place (an OpenAPI operation cannot
    point into a schema's own `$defs`)."""
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def create_v2_router(scorer, model_name: str, *, max_rows: int = 1000, auth: Callable | None = None,
                     on_scored: Callable[[Any, np.ndarray, np.ndarray], None] | None = None,
                     history=None, server_version: str = "") -> APIRouter:
    """The V2 routes for one model. `auth`: a FastAPI dependency guarding the server metadata
    and model routes (the health routes stay open for probes); `on_scored(x, scores, flags)`:
    called with each scored request's rows as the model scored them (a matrix, or a table with
    the history features), e.g. for metrics counters and drift monitoring; `history`: the
    service's `HistoryStore` for a model with entity history features (the request gives the
    columns it reads instead of the history columns, which are computed); `server_version`: the
    server metadata's version."""
    names = list(scorer.feature_names_in_)
    kinds = input_kinds(scorer)
    if history is not None:  # the history columns come last; the entity, time and amount are given
        from aedetect.serving.history_store import history_inputs

        derived = set(history.schema.computed_features)  # (a label-aware model's label-based risk too)
        names, kinds = (list(v) for v in zip(*[(n, k) for n, k in zip(names, kinds, strict=False)
                                               if n not in derived], strict=True))
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
    server = ServerMetadata(name="aedetect", version=server_version, extensions=EXTENSIONS)

    def check_name(name: str) -> None:
        if name != model_name:
            raise V2Error(f"model {name!r} is not served here; this server serves {model_name!r}", 404)

    errors = {404: {"description": "another model name: `{\"error\": message}`"}}
    if auth is not None:
        errors[401] = {"description": "missing or wrong API key"}

    @router.get("", response_model=ServerMetadata, dependencies=guarded,
                responses={401: errors[401]} if auth is not None else {})
    def server_metadata() -> ServerMetadata:
        return server

    @router.get("/health/live")
    def live() -> dict:
        return {"live": True}

    @router.get("/health/ready")
    def ready() -> dict:
        return {"ready": True}  # the model loads before the app exists

    @router.get("/models/{name}", response_model=ModelMetadata, dependencies=guarded, responses=errors)
    def model_metadata(name: str) -> ModelMetadata:
        check_name(name)
        return metadata

    @router.get("/models/{name}/ready", dependencies=guarded, responses=errors)
    def model_ready(name: str) -> dict:
        check_name(name)
        return {"name": name, "ready": True}

    def answer(body: bytes, header_length: str | None, content_encoding: str | None) -> Response:
        req = read_request(body, header_length, content_encoding)
        wanted = requested_outputs(req)
        if kinds is None:
            x = features_from_request(req, names, max_rows)
        else:
            x = table_from_request(req, names, kinds, max_rows)
        try:
            if history is None:
                scores = scorer.anomaly_score(x)
            else:
                with history.pending(x) as features:  # the rows are stored once they scored
                    x = x.join(features)
                    scores = scorer.anomaly_score(x)
        except DataError as exc:  # a value the model cannot read (a gap it does not impute...)
            raise V2Error(str(exc)) from None
        flags = scores > scorer.threshold_
        if on_scored is not None:
            on_scored(x, scores, flags)
        data = {"score": np.asarray(scores, dtype="float64"), "flag": np.asarray(flags, dtype=bool)}
        return encode_response(model_name, req.id, [(w, data[w], binary) for w, binary in wanted])

    @router.post("/models/{name}/infer", response_model=InferenceResponse, response_model_exclude_none=True,
                 dependencies=guarded,
                 openapi_extra={"requestBody": {"required": True, "description": (
                     "JSON whatever the Content-Type; with the Inference-Header-Content-Length header, "
                     "that many bytes of JSON followed by the inputs' binary data (the binary tensor "
                     "data extension)"), "content": {"application/json": {
                         "schema": _inline_refs(JSONInferenceRequest.model_json_schema())}}}},
                 responses={200: {"content": {"application/octet-stream": {"schema": {
                                "type": "string", "format": "binary"}}},
                                  "description": "JSON, or with binary outputs the JSON part (its length in "
                                                 "the Inference-Header-Content-Length header) and their bytes"},
                            **errors, 400: {"description": 'a bad request: `{"error": message}`'},
                            411: {"description": "Content-Length header missing"},
                            413: {"description": "request body too large"},
                            503: {"description": "overloaded: retry after the Retry-After seconds"}})
    async def infer(name: str, request: Request) -> Response:
        check_name(name)
        body = await request.body()
        # the scoring runs in the thread pool, off the event loop (as a plain `def` route would)
        return await run_in_threadpool(answer, body, request.headers.get(HEADER_LENGTH),
                                       request.headers.get("content-encoding"))

    return router
