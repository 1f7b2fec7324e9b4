"""Loading from file:// and s3:// with digest verification, refusal on mismatch, drain on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.serve.serve_testkit import (
    Models,
    Oracle,
    Server,
    StartServer,
    batch,
    free_port,
    in_background,
    sha256,
    wait_in_flight,
)
from tests.support.polling import wait_for

SLOW_ROWS = 600  # about a second of inference on the slow model

V2_INFER = "/v2/models/{name}/infer"


def v2_body(x: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "input_1", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def refused(url: str) -> bool:
    """Nobody listens on the port any more (a connection that is accepted, then reset, is not that)."""
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_matching_digest_serves(start_server: StartServer, models: Models) -> None:
    server = start_server(models.float32, "--sha256", sha256(models.float32).upper())
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def wrong_digest(models: Models, case: str) -> str:
    """All zeros, or the right digest with its last digit changed, in upper case: only the case-folded
    comparison tells that one apart from the right digest written in upper case (which serves)."""
    if case == "zeros":
        return "0" * 64
    right = sha256(models.float32)
    return (right[:-1] + ("1" if right[-1] != "1" else "2")).upper()


@pytest.mark.parametrize("case", ["zeros", "uppercase-off-by-one"])
def test_digest_mismatch_never_becomes_ready(start_server: StartServer, models: Models, case: str) -> None:
    """Stays live (no crash loop), unready, and says why in the readiness body, v1 status and log."""
    server = start_server(models.float32, "--sha256", wrong_digest(models, case), ready=False)
    status_url = f"{server.url}/v1/models/{server.name}"
    deadline = time.monotonic() + 20
    while httpx.get(status_url).json()["model_version_status"][0]["state"] != "END":
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    status = httpx.get(status_url).json()["model_version_status"][0]["status"]
    assert status["error_code"] == "UNKNOWN" and "sha256 mismatch" in status["error_message"]
    ready = httpx.get(f"{server.url}/v2/health/ready")
    assert ready.status_code == 503 and "sha256 mismatch" in ready.json()["error"]
    assert httpx.get(f"{server.url}/v2/models/{server.name}/ready").status_code == 503
    assert (
        httpx.post(server.url + V2_INFER.format(name=server.name), json=v2_body(batch(1))).status_code == 503
    )
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert server.process.poll() is None
    assert "sha256 mismatch" in server.output()
    assert server.stop() == 0


def test_sigterm_drains_requests_in_flight(start_server: StartServer, models: Models, oracle: Oracle) -> None:
    """A request in inference at SIGTERM (a large batch on a slow model) completes, then exit 0."""
    server = start_server(models.slow, "--interpreters", "1")
    x = batch(SLOW_ROWS, seed=5)
    url = server.url + V2_INFER.format(name=server.name)
    answer = in_background(lambda: httpx.post(url, json=v2_body(x), timeout=60))
    wait_in_flight(server.url)
    server.process.send_signal(signal.SIGTERM)
    wait_for("the listener to close", lambda: refused(f"{server.url}/v2/health/live"), timeout=10, interval=0.02)
    assert answer.running(), "the listener must close while the request is still being answered"
    response = answer()
    assert response.status_code == 200, response.text
    assert np.allclose(
        np.reshape(response.json()["outputs"][0]["data"], (SLOW_ROWS, 10)), oracle(models.slow, x), atol=1e-5
    )
    assert server.process.wait(timeout=15) == 0
    assert "drained" in server.output()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3-compatible server (moto) on loopback; yields its endpoint."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(endpoint)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, log.read_text()
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def models_bucket(endpoint: str) -> Any:
    """A client of the `models` bucket's store, the bucket created if need be."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket="models")
    return client


def upload(endpoint: str, path: Path, key: str) -> str:
    models_bucket(endpoint).upload_file(str(path), "models", key)
    return f"s3://models/{key}"


def test_loads_from_s3_with_digest(
    start_server: StartServer, models: Models, oracle: Oracle, s3: str
) -> None:
    uri = upload(s3, models.int8, "digits/int8/model.tflite")
    server: Server = start_server(uri, "--sha256", sha256(models.int8), "--s3-endpoint", s3, env=S3_ENV)
    x = batch(2, seed=6)
    answer = httpx.post(f"{server.url}/v1/models/{server.name}:predict", json={"instances": x.tolist()})
    assert np.allclose(answer.json()["predictions"], oracle(models.int8, x), atol=1e-6)


def test_missing_s3_object_is_retried_until_it_is_there(
    start_server: StartServer, models: Models, oracle: Oracle, s3: str
) -> None:
    """Unready while the object is missing (saying so), then ready by itself once it is uploaded."""
    uri = "s3://models/late/model.tflite"
    models_bucket(s3)
    server = start_server(
        uri,
        "--sha256",
        sha256(models.float32),
        "--s3-endpoint",
        s3,
        ready=False,
        env={**S3_ENV, **{k: v for k, v in os.environ.items() if k == "PATH"}},
    )
    ready_url = f"{server.url}/v2/health/ready"
    wait_for("a readiness answer naming the missing object", lambda: "does not exist" in httpx.get(ready_url).text)
    answer = httpx.get(ready_url)
    assert answer.status_code == 503 and "retrying" in answer.json()["error"], answer.text
    upload(s3, models.float32, "late/model.tflite")
    wait_for("ready once the object exists", lambda: httpx.get(ready_url).status_code == 200, timeout=60)
    x = batch(2, seed=7)
    predicted = httpx.post(f"{server.url}/v1/models/{server.name}:predict", json={"instances": x.tolist()})
    assert np.allclose(predicted.json()["predictions"], oracle(models.float32, x), atol=1e-5)
    assert server.process.poll() is None
