"""Both protocols through a real HTTP client against a real server; outputs equal LiteRT's own."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.integration.serve.serve_testkit import Models, Oracle, Server, StartServer, batch


@pytest.fixture
def server(start_server: StartServer, models: Models) -> Server:
    return start_server(models.float32)


def test_v1_status_and_metadata(server: Server) -> None:
    status = httpx.get(f"{server.url}/v1/models/{server.name}")
    assert status.status_code == 200
    assert status.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert httpx.get(f"{server.url}/v1/models/{server.name}/versions/1").status_code == 200

    meta = httpx.get(f"{server.url}/v1/models/{server.name}/metadata").json()
    assert meta["model_spec"] == {"name": server.name, "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    ((name, tensor),) = signature["inputs"].items()
    assert tensor["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in tensor["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    ((_, output),) = signature["outputs"].items()
    assert [d["size"] for d in output["tensor_shape"]["dim"]] == ["-1", "10"]


def test_v1_predict_row_and_columnar(server: Server, models: Models, oracle: Oracle) -> None:
    x = batch(3)
    expected = oracle(models.float32, x)
    rows = httpx.post(f"{server.url}/v1/models/{server.name}:predict", json={"instances": x.tolist()})
    assert rows.status_code == 200, rows.text
    assert np.allclose(rows.json()["predictions"], expected, atol=1e-6)

    columns = httpx.post(
        f"{server.url}/v1/models/{server.name}/versions/1:predict", json={"inputs": x.tolist()}
    )
    assert columns.status_code == 200, columns.text
    assert np.allclose(columns.json()["outputs"], expected, atol=1e-6)

    named = httpx.post(
        f"{server.url}/v1/models/{server.name}:predict",
        json={"signature_name": "serving_default", "instances": [{"input_1": r} for r in x.tolist()]},
    )
    assert named.status_code == 200, named.text
    assert np.allclose(named.json()["predictions"], expected, atol=1e-6)


def test_v2_health_metadata_and_infer(server: Server, models: Models, oracle: Oracle) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server.url}/v2/models/{server.name}/ready").json() == {
        "name": server.name,
        "ready": True,
    }
    meta = httpx.get(f"{server.url}/v2/models/{server.name}").json()
    assert meta["platform"] == "tflite" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input_1", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert meta["outputs"][0]["shape"] == [-1, 10] and meta["outputs"][0]["datatype"] == "FP32"

    x = batch(4, seed=1)
    for data in (x.ravel().tolist(), x.tolist()):  # flat and nested data are both allowed
        answer = httpx.post(
            f"{server.url}/v2/models/{server.name}/infer",
            json={
                "id": "r1",
                "inputs": [{"name": "input_1", "shape": [4, 8, 8, 1], "datatype": "FP32", "data": data}],
            },
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_name"] == server.name and body["id"] == "r1"
        (output,) = body["outputs"]
        assert output["shape"] == [4, 10] and output["datatype"] == "FP32"
        assert np.allclose(np.reshape(output["data"], (4, 10)), oracle(models.float32, x), atol=1e-6)


def test_int8_model_takes_and_returns_floats(
    start_server: StartServer, models: Models, oracle: Oracle
) -> None:
    server = start_server(models.int8)
    meta = httpx.get(f"{server.url}/v2/models/{server.name}").json()
    assert meta["inputs"][0]["datatype"] == "FP32" and meta["outputs"][0]["datatype"] == "FP32"
    x = batch(5, seed=2)
    expected = oracle(models.int8, x)
    v1 = httpx.post(f"{server.url}/v1/models/{server.name}:predict", json={"instances": x.tolist()})
    assert v1.status_code == 200, v1.text
    assert np.allclose(v1.json()["predictions"], expected, atol=1e-6)
    v2 = httpx.post(
        f"{server.url}/v2/models/{server.name}/infer",
        json={
            "inputs": [
                {"name": "input_1", "shape": [5, 8, 8, 1], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    assert np.allclose(np.reshape(v2.json()["outputs"][0]["data"], (5, 10)), expected, atol=1e-6)
    # out-of-range floats are clipped to the int8 range, not wrapped
    clipped = httpx.post(
        f"{server.url}/v1/models/{server.name}:predict", json={"instances": (x * 100).tolist()}
    )
    assert np.allclose(clipped.json()["predictions"], oracle(models.int8, x * 100), atol=1e-6)


def test_metrics(server: Server) -> None:
    httpx.post(f"{server.url}/v1/models/{server.name}:predict", json={"instances": batch(2).tolist()})
    httpx.post(f"{server.url}/v1/models/{server.name}:predict", content=b"{")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'optimodel_requests_total{code="200",protocol="v1",route="/v1/models/{name}:predict"} 1.0' in text
    assert 'optimodel_request_errors_total{code="400",protocol="v1"} 1.0' in text
    assert "optimodel_request_duration_seconds_bucket" in text
    # The histogram is exported (empty) from the start: only its count and sum show the call of 2 rows.
    assert "optimodel_batch_size_count 1.0" in text and "optimodel_batch_size_sum 2.0" in text
    assert "optimodel_model_ready 1.0" in text
