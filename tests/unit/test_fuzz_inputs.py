"""Fuzzing what clients and tenants send: the server's v1 and v2 request decoders and the spec parser.

The server runs its real aiohttp app (routes, error middleware) over a fake model, so every answer
is what a client would get: any request gets a 4xx with our message, never a 500 (an escaped
exception) and never a crash. The spec parser raises SpecError for anything else than a spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimodel.errors import SpecError
from optimodel.serve.app import InFlight, ServerSettings, build_app
from optimodel.serve.dataplane import DataPlane
from optimodel.serve.intake import Intake
from optimodel.serve.loader import LoadSettings
from optimodel.serve.metrics import Metrics
from optimodel.serve.model import Signature, TensorSpec
from optimodel.spec import S3Settings, parse_spec

F32 = np.dtype("float32")
INPUT = TensorSpec(name="x", tensor_name="x:0", index=0, dtype=F32, shape=(-1, 2), storage_dtype=F32)
OUTPUT = TensorSpec(name="y", tensor_name="y:0", index=1, dtype=F32, shape=(-1, 3), storage_dtype=F32)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
numbers = st.integers(min_value=-(2**80), max_value=2**80) | st.floats(allow_nan=False, allow_infinity=False)
rows = st.lists(st.lists(numbers, min_size=0, max_size=3), max_size=3)
v1_bodies = st.fixed_dictionaries(
    {},
    optional={
        "instances": rows | json_values,
        "inputs": rows | st.dictionaries(st.sampled_from(["x", "z"]), rows | json_values, max_size=2),
        "signature_name": st.sampled_from(["serving_default", "other"]),
    },
)
v2_tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "z"]) | st.text(max_size=4),
        "shape": st.lists(st.integers(min_value=-3, max_value=2**70), max_size=4) | json_values,
        "datatype": st.sampled_from(["FP32", "INT8", "BYTES"]) | json_values,
        "data": rows | st.lists(numbers, max_size=8) | json_values,
    }
)
v2_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(v2_tensors, max_size=3) | json_values},
    optional={"id": json_values, "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=3)}))},
)
raw_bodies = st.binary(max_size=64) | st.sampled_from(
    [b"[" * 100_000, b'{"instances":' + b"[" * 50_000, b'{"inputs":[{"data":' + b"[" * 5_000 + b"]" * 5_000 + b"}]}",
     b"\xff\xfe", b"1e999999", b'{"instances": [[1e400, -1e400]]}', b'"\\ud800"']
)


class _Batcher:
    async def run(self, arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        return {"y": np.zeros((rows, 3), F32)}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[asyncio.Runner, TestClient]]:  # type: ignore[type-arg]
    plane = DataPlane("m")
    plane.attach(Signature(inputs=(INPUT,), outputs=(OUTPUT,)), _Batcher())  # type: ignore[arg-type]
    load = LoadSettings(uri="s3://b/m.tflite", sha256=None, interpreters=1, threads=1, s3=S3Settings(),
                        directory=Path("/nonexistent"))
    config = ServerSettings(name="m", host="127.0.0.1", port=0, max_body_bytes=1 << 20, max_batch_size=8,
                            batch_wait_ms=0, drain_seconds=1, load=load)
    runner = asyncio.Runner()

    async def start() -> TestClient:  # type: ignore[type-arg]
        intake = Intake(config.max_body_bytes, config.read_timeout_seconds)
        client = TestClient(TestServer(build_app(config, plane, Metrics(), InFlight(), intake)))
        await client.start_server()
        return client

    client = runner.run(start())
    try:
        yield runner, client
    finally:
        runner.run(client.close())
        runner.close()


def _post(server: tuple[asyncio.Runner, TestClient], path: str, body: bytes) -> tuple[int, Any]:  # type: ignore[type-arg]
    runner, client = server

    async def post() -> tuple[int, Any]:
        response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
        return response.status, await response.json()

    return runner.run(post())


def _check(status: int, answer: Any) -> None:
    assert status < 500, answer
    if status >= 400:
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and "Traceback" not in answer["error"]


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


@FUZZ
@given(body=v1_bodies)
def test_v1_answers_every_json_request_without_a_server_error(server: Any, body: dict[str, Any]) -> None:
    _check(*_post(server, "/v1/models/m:predict", _encode(body)))


@FUZZ
@given(body=v2_bodies)
def test_v2_answers_every_json_request_without_a_server_error(server: Any, body: dict[str, Any]) -> None:
    _check(*_post(server, "/v2/models/m/infer", _encode(body)))


@FUZZ
@given(body=raw_bodies, path=st.sampled_from(["/v1/models/m:predict", "/v2/models/m/infer"]))
def test_malformed_or_deeply_nested_bodies_are_the_clients_error(server: Any, body: bytes, path: str) -> None:
    status, answer = _post(server, path, body)
    _check(status, answer)


@pytest.mark.parametrize("path", ["/v1/models/m:predict", "/v2/models/m/infer"])
def test_deep_nesting_is_a_400(server: Any, path: str) -> None:
    status, answer = _post(server, path, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert status == 400, answer


spec_like = st.fixed_dictionaries(
    {},
    optional={
        "source": st.fixed_dictionaries({}, optional={"uri": st.text(max_size=20) | json_values}) | json_values,
        "evaluation": st.fixed_dictionaries({}, optional={"data": st.text(max_size=20), "metric": json_values}),
        "artifacts": st.fixed_dictionaries(
            {}, optional={"uri": st.text(max_size=20), "s3": st.dictionaries(st.text(max_size=12), json_values)}),
        "optimization": st.dictionaries(st.sampled_from(["method", "quantization", "pruning", "candidates"]),
                                        json_values),
        "gates": st.dictionaries(st.sampled_from(["maxSizeBytes", "minMetric", "maxSizeRatio"]), json_values),
        "serving": st.dictionaries(st.sampled_from(["replicas", "autoscaling", "resources"]), json_values),
        "job": st.dictionaries(st.sampled_from(["image", "serviceAccountName", "resources"]), json_values),
    },
)


@settings(max_examples=400, deadline=None)
@given(data=spec_like | st.dictionaries(st.text(max_size=10), json_values))
def test_the_spec_parser_only_ever_refuses_with_a_spec_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(SpecError):
        parse_spec(data)


def test_the_spec_parser_refuses_deep_nesting() -> None:
    deep: Any = "x"
    for _ in range(10_000):
        deep = {"a": deep}
    with pytest.raises(SpecError):
        parse_spec({"source": deep, "evaluation": {"data": "s3://b/x"}, "artifacts": {"uri": "s3://b/a"}})
