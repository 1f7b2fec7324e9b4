"""Open inference protocol (KServe v2 REST), a thin transport over the data plane. Serve layer, transport.

May import aiohttp, pydantic, numpy, `dataplane`, `errors`, `model` (types) and the package version.
Wire types are pydantic models; this module only translates named tensors (name, shape, datatype,
flat or nested data) to arrays and back. Errors are raised; the app's middleware answers them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from optimodel import __version__
from optimodel.serve.dataplane import VERSION, DataPlane, decode_json, encode_json, to_array
from optimodel.serve.errors import InvalidInput, ModelNotReady
from optimodel.serve.intake import Intake
from optimodel.serve.mirror import INFERENCE_SECONDS_HEADER
from optimodel.serve.model import TensorSpec
from optimodel.serve.pool import Arrays

_NAME = "{name:[^/]+}"
_VERSIONED = _NAME + "/versions/{version:[^/]+}"

DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RequestInput(_Wire):
    name: str
    shape: list[int]
    datatype: str
    data: Any
    parameters: dict[str, Any] | None = None


class RequestOutput(_Wire):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(_Wire):
    id: str | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None
    parameters: dict[str, Any] | None = None


class ResponseOutput(_Wire):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(_Wire):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode_json(value), status=status, content_type="application/json")


_BY_DTYPE = {np.dtype(name): datatype for name, datatype in DATATYPES.items()}


def _datatype(spec: TensorSpec) -> str:
    """A dict look-up by dtype: `dtype.name` costs microseconds, and this runs per tensor per request."""
    datatype = _BY_DTYPE.get(spec.dtype)
    return datatype if datatype is not None else spec.dtype.name.upper()


def _parse(body: bytes) -> InferRequest:
    """Parse and validate in one pass of pydantic's JSON parser (no intermediate `json.loads` objects)."""
    try:
        return InferRequest.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise InvalidInput(f"malformed JSON body: {first['msg']}") from None
        if first["type"] == "model_type" and not first["loc"]:
            decode_json(body)  # the same message as v1 for a body that is not an object
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        raise InvalidInput(f"invalid inference request: {problems}") from None


def _array(tensor: RequestInput, plane: DataPlane) -> Any:
    where = f"input {tensor.name!r}"
    spec = plane.input_spec(tensor.name, "inputs")
    if tensor.datatype != _datatype(spec):
        raise InvalidInput(
            f"{where}: datatype {tensor.datatype} does not match the model's {_datatype(spec)}"
        )
    if any(d < 0 for d in tensor.shape):
        raise InvalidInput(f"{where}: shape {tensor.shape} has a negative dimension")
    array = to_array(tensor.data, spec, where)
    if array.size != math.prod(tensor.shape):
        raise InvalidInput(f"{where}: {array.size} values in data do not fill shape {tensor.shape}")
    try:
        return array.reshape(tensor.shape)
    except (ValueError, OverflowError):  # e.g. [0, 2**70]: no values, yet a dimension numpy cannot index
        raise InvalidInput(f"{where}: shape {tensor.shape} is not a shape numpy can hold") from None


def _decode(body: bytes, plane: DataPlane) -> tuple[InferRequest, Arrays]:
    """The request without its tensors' data, and their arrays: the JSON lists are dropped here, so
    only the compact arrays stay while the request waits for inference (in the intake's decode
    thread for a large body)."""
    plane.check_values(body)
    parsed = _parse(body)
    names = [tensor.name for tensor in parsed.inputs]
    if len(set(names)) != len(names):
        raise InvalidInput(f"an input is given more than once: {names}")
    arrays = {tensor.name: _array(tensor, plane) for tensor in parsed.inputs}
    return parsed.model_copy(update={"inputs": []}), arrays


def _response(plane: DataPlane, request: InferRequest, outputs: Arrays) -> web.Response:
    specs = {spec.name: spec for spec in plane.signature.outputs}
    wanted = [o.name for o in request.outputs] if request.outputs else list(specs)
    unknown = [name for name in wanted if name not in specs]
    if unknown:
        raise InvalidInput(
            f"unknown output(s) {', '.join(map(repr, unknown))}; the model has {sorted(specs)}"
        )
    response = InferResponse.model_construct(  # built here from valid parts: no validation needed
        model_name=plane.name,
        model_version=VERSION,
        id=request.id,
        outputs=[
            ResponseOutput.model_construct(
                name=name,
                shape=list(outputs[name].shape),
                datatype=_datatype(specs[name]),
                data=outputs[name].ravel().tolist(),
            )
            for name in wanted
        ],
    )
    return web.Response(body=response.model_dump_json(exclude_none=True), content_type="application/json")


def routes(plane: DataPlane, intake: Intake) -> list[web.RouteDef]:
    """The v2 endpoints, bound to `plane`; bodies come through `intake`."""

    def check(request: web.Request) -> None:
        plane.check_model(request.match_info["name"], request.match_info.get("version"))

    async def server_metadata(_: web.Request) -> web.Response:
        return _json({"name": "optimodel", "version": __version__, "extensions": []})

    async def live(_: web.Request) -> web.Response:
        return _json({"live": True})

    async def ready(_: web.Request) -> web.Response:
        if not plane.ready:
            state = plane.state
            message = f"not ready: model {plane.name!r} is {state.phase.lower()} {state.message}"
            raise ModelNotReady(message.strip())
        return _json({"ready": True})

    async def model_metadata(request: web.Request) -> web.Response:
        check(request)
        signature = plane.signature
        return _json(
            {
                "name": plane.name,
                "versions": [VERSION],
                "platform": "tflite",
                "inputs": [
                    {"name": s.name, "datatype": _datatype(s), "shape": list(s.shape)}
                    for s in signature.inputs
                ],
                "outputs": [
                    {"name": s.name, "datatype": _datatype(s), "shape": list(s.shape)}
                    for s in signature.outputs
                ],
            }
        )

    async def model_ready(request: web.Request) -> web.Response:
        check(request)
        await ready(request)
        return _json({"name": plane.name, "ready": True})

    async def infer(request: web.Request) -> web.Response:
        check(request)
        parsed, arrays = await intake.decode(request, lambda body: _decode(body, plane))
        started = time.perf_counter()
        outputs = await plane.infer(arrays)
        response = _response(plane, parsed, outputs)
        # What a shadow mirror compares with the serving model's own time: inference only, no network.
        response.headers[INFERENCE_SECONDS_HEADER] = f"{time.perf_counter() - started:.6f}"
        return response

    return [
        web.get("/v2", server_metadata),
        web.get("/v2/health/live", live),
        web.get("/v2/health/ready", ready),
        web.get(f"/v2/models/{_NAME}", model_metadata),
        web.get(f"/v2/models/{_VERSIONED}", model_metadata),
        web.get(f"/v2/models/{_NAME}/ready", model_ready),
        web.get(f"/v2/models/{_VERSIONED}/ready", model_ready),
        web.post(f"/v2/models/{_NAME}/infer", infer),
        web.post(f"/v2/models/{_VERSIONED}/infer", infer),
    ]
