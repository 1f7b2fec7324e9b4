"""TensorFlow Serving REST API (v1), a thin transport over the data plane. Serve layer, transport.

May import aiohttp, `dataplane`, `errors`, and `model` (types). It only translates: TF Serving's
row (`instances` -> `predictions`) and columnar (`inputs` -> `outputs`) formats to named arrays and
back, and its status and metadata documents. Errors are raised, never answered here: the app's
middleware answers `{"error": ...}` with the status from `errors`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from optimodel.serve.dataplane import VERSION, DataPlane, decode_json, encode_json, to_array
from optimodel.serve.errors import InvalidInput
from optimodel.serve.intake import Intake
from optimodel.serve.model import TensorSpec
from optimodel.serve.pool import Arrays

SIGNATURE = "serving_default"
_NAME = "{name:[^/:]+}"
_VERSIONED = _NAME + "/versions/{version:[^/:]+}"

_TF_DTYPES = {
    "float32": "DT_FLOAT",
    "float16": "DT_HALF",
    "float64": "DT_DOUBLE",
    "int8": "DT_INT8",
    "uint8": "DT_UINT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "bool": "DT_BOOL",
}

_STATES = {"LOADING": "LOADING", "READY": "AVAILABLE", "FAILED": "END", "DRAINING": "UNLOADING"}


def _json(value: Any) -> web.Response:
    return web.Response(body=encode_json(value), content_type="application/json")


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": _TF_DTYPES.get(spec.dtype.name, "DT_INVALID"),
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False},
        "name": spec.tensor_name,
    }


def _rows(instances: Any, plane: DataPlane) -> Arrays:
    """Row format: one entry per instance; named (`{input: value}`) or bare when there is one input."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list with one entry per instance")
    inputs = plane.signature.inputs
    if all(isinstance(item, dict) for item in instances):
        names = {name for item in instances for name in item}
        for name in names:
            plane.input_spec(name, "instances")
        arrays: Arrays = {}
        for name in names:
            if any(name not in item for item in instances):
                raise InvalidInput(f"instances: every instance must name input {name!r}")
            arrays[name] = to_array(
                [item[name] for item in instances], plane.input_spec(name, "instances"), "instances"
            )
        return arrays
    if len(inputs) != 1:
        raise InvalidInput(
            "instances: the model has several inputs: give each instance as {input name: value}"
        )
    return {inputs[0].name: to_array(instances, inputs[0], "instances")}


def _columns(columns: Any, plane: DataPlane) -> Arrays:
    """Columnar format: `{input: batch}`, or the batch alone when there is one input."""
    inputs = plane.signature.inputs
    if isinstance(columns, dict):
        return {
            name: to_array(value, plane.input_spec(name, "inputs"), "inputs")
            for name, value in columns.items()
        }
    if len(inputs) != 1:
        raise InvalidInput("inputs: the model has several inputs: give {input name: value}")
    return {inputs[0].name: to_array(columns, inputs[0], "inputs")}


def _predictions(outputs: Arrays) -> Any:
    if len(outputs) == 1:
        return next(iter(outputs.values())).tolist()
    rows = next(iter(outputs.values())).shape[0]
    return [{name: value[i].tolist() for name, value in outputs.items()} for i in range(rows)]


def _outputs(outputs: Arrays) -> Any:
    if len(outputs) == 1:
        return next(iter(outputs.values())).tolist()
    return {name: value.tolist() for name, value in outputs.items()}


def _decode(body: bytes, plane: DataPlane) -> tuple[bool, Arrays]:
    """A predict body to (row format?, arrays); runs in the intake's decode thread for large bodies."""
    plane.check_values(body)
    request = decode_json(body)
    if request.get("signature_name", SIGNATURE) != SIGNATURE:
        raise InvalidInput(f"unknown signature_name {request['signature_name']!r}: the model has {SIGNATURE!r}")
    if ("instances" in request) == ("inputs" in request):
        raise InvalidInput("give exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if "instances" in request:
        return True, _rows(request["instances"], plane)
    return False, _columns(request["inputs"], plane)


def routes(plane: DataPlane, intake: Intake) -> list[web.RouteDef]:
    """The v1 endpoints, bound to `plane`; bodies come through `intake`."""

    def check(request: web.Request) -> None:
        plane.check_model(request.match_info["name"], request.match_info.get("version"))

    async def status(request: web.Request) -> web.Response:
        check(request)
        state = plane.state
        failed = state.phase == "FAILED"
        return _json(
            {
                "model_version_status": [
                    {
                        "version": VERSION,
                        "state": _STATES[state.phase],
                        "status": {
                            "error_code": "UNKNOWN" if failed else "OK",
                            "error_message": state.message if failed else "",
                        },
                    }
                ]
            }
        )

    async def metadata(request: web.Request) -> web.Response:
        check(request)
        signature = plane.signature
        return _json(
            {
                "model_spec": {"name": plane.name, "signature_name": "", "version": VERSION},
                "metadata": {
                    "signature_def": {
                        "signature_def": {
                            SIGNATURE: {
                                "inputs": {s.name: _tensor_info(s) for s in signature.inputs},
                                "outputs": {s.name: _tensor_info(s) for s in signature.outputs},
                                "method_name": "tensorflow/serving/predict",
                            }
                        }
                    }
                },
            }
        )

    async def predict(request: web.Request) -> web.Response:
        check(request)
        rows, arrays = await intake.decode(request, lambda body: _decode(body, plane))
        if rows:
            return _json({"predictions": _predictions(await plane.infer(arrays))})
        return _json({"outputs": _outputs(await plane.infer(arrays))})

    return [
        web.get(f"/v1/models/{_NAME}", status),
        web.get(f"/v1/models/{_VERSIONED}", status),
        web.get(f"/v1/models/{_NAME}/metadata", metadata),
        web.get(f"/v1/models/{_VERSIONED}/metadata", metadata),
        web.post(f"/v1/models/{_NAME}:predict", predict),
        web.post(f"/v1/models/{_VERSIONED}:predict", predict),
    ]
