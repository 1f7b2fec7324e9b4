"""Fixtures of the serving tests: small real models, real server processes, LiteRT as the oracle.

The models are built once per session by TensorFlow in a child process (TensorFlow stays out of the
test process; only LiteRT, the oracle, is imported here). Servers are real `optimodel serve`
processes on free loopback ports, stopped (and killed if need be) when the test ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.integration.serve.serve_testkit import (
    BUILD_MODELS,
    NAME,
    REPO,
    Models,
    Oracle,
    Server,
    StartServer,
    free_port,
    litert_predict,
    serve_command,
    wait_until,
)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """A float32 and a full-int8 model: conv + dense on 8x8x1 inputs, 10 classes (~20 s, mostly TF import)."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, "-c", BUILD_MODELS, str(out)],
        check=True,
        timeout=180,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Models(float32=out / "float32.tflite", int8=out / "int8.tflite", slow=out / "slow.tflite")


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """`oracle(model_path, float_batch)`: what LiteRT itself answers."""
    return litert_predict


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start `optimodel serve` with extra flags; waits until ready (or only live with ready=False)."""
    servers: list[Server] = []

    def start(
        model: Path | str,
        *flags: str,
        ready: bool = True,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> Server:
        """`prefix`: a command the server runs under (one that ends by exec-ing its arguments)."""
        port = free_port()
        uri = model if isinstance(model, str) else model.as_uri()
        log = tmp_path / f"server-{port}.log"
        environment = {**os.environ, "PYTHONPATH": str(REPO / "operator"), **(env or {})}
        process = subprocess.Popen(
            [
                *prefix,
                *serve_command(),
                "--model",
                uri,
                "--name",
                NAME,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *flags,
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=environment,
        )
        server = Server(url=f"http://127.0.0.1:{port}", name=NAME, process=process, log=log)
        servers.append(server)
        path = "/v2/health/ready" if ready else "/v2/health/live"
        wait_until(lambda: httpx.get(server.url + path).status_code == 200, 30, path, server)
        return server

    yield start
    for server in servers:
        server.stop()
