"""Backpressure: row limit (413), in-flight limit (429 + Retry-After), read and keep-alive timeouts,
and a server in a 256 MiB memory cgroup that survives a burst of maximum-size requests while it keeps
answering small ones."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from optimodel.serve.cli import DEFAULT_MAX_BODY_BYTES
from tests.integration.serve.serve_testkit import (
    Models,
    Server,
    StartServer,
    batch,
    in_background,
    wait_in_flight,
)
from tests.integration.serve.test_shutdown import address, read_response, v2_body

V2_INFER = "/v2/models/{name}/infer"
MEMORY_ROOT = Path("/sys/fs/cgroup/memory")  # cgroup v1 on these machines (FACTS)
LIMIT_BYTES = 256 * 1024 * 1024


def test_rows_in_flight_and_timeouts(start_server: StartServer, models: Models) -> None:
    server = start_server(
        models.slow,
        "--interpreters", "1",
        "--max-request-rows", "700",
        "--max-in-flight", "1",
        "--read-timeout-seconds", "1",
        "--keepalive-timeout-seconds", "1",
    )  # fmt: skip
    infer = server.url + V2_INFER.format(name=server.name)

    too_many = httpx.post(infer, content=v2_body(701))
    assert too_many.status_code == 413 and "701 rows exceed the limit of 700" in too_many.json()["error"]

    running = in_background(lambda: httpx.post(infer, content=v2_body(700), timeout=60))
    wait_in_flight(server.url)
    refused = httpx.post(infer, content=v2_body(1))
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "1"
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200  # probes are never refused
    assert running().status_code == 200
    assert httpx.post(infer, content=v2_body(1)).status_code == 200  # admitted again

    stalled = socket.create_connection(address(server))
    path = V2_INFER.format(name=server.name)
    stalled.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
    stalled.settimeout(10)
    status, _, body = read_response(stalled)
    assert status == 408, body

    idle = socket.create_connection(address(server))
    idle.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(idle)[0] == 200
    idle.settimeout(10)
    started = time.monotonic()
    assert idle.recv(1) == b""  # closed by the server after the keep-alive timeout
    assert time.monotonic() - started < 5


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A memory cgroup (v1) of 256 MiB, removed afterwards; skipped where none can be made."""
    if os.geteuid() != 0 or not (MEMORY_ROOT / "cgroup.procs").exists():
        pytest.skip("needs root and the cgroup v1 memory controller")
    group = MEMORY_ROOT / f"optimodel-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(LIMIT_BYTES))
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():  # whatever the test left running
            (MEMORY_ROOT / "cgroup.procs").write_text(pid)
        group.rmdir()


def oom_kills(group: Path) -> int:
    fields = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
    return int(fields.get("oom_kill", "0"))


def max_body(rows: int) -> bytes:
    """A v1 body of `rows` digit-sized rows of short numbers (the most Python objects per byte)."""
    row = "[" + ",".join(["[0.5]" * 1] * 8) + "]"
    sample = "[" + ",".join([row] * 8) + "]"
    return ('{"instances":[' + ",".join([sample] * rows) + "]}").encode()


def test_survives_a_burst_of_maximum_size_requests_in_256_mib(
    start_server: StartServer, models: Models, memory_cgroup: Path
) -> None:
    """16 concurrent bodies of the maximum size (refused for their value count without being decoded) and 16
    concurrent 1,024-row requests, while a client keeps sending small ones: no OOM kill, small ones answered."""
    enter = f"echo $$ > {memory_cgroup / 'cgroup.procs'} && exec \"$@\""
    server: Server = start_server(models.float32, prefix=["sh", "-c", enter, "sh"])
    assert str(server.process.pid) in (memory_cgroup / "cgroup.procs").read_text()
    url = f"{server.url}/v1/models/{server.name}:predict"
    huge = max_body(DEFAULT_MAX_BODY_BYTES // len(max_body(1)) - 1)
    assert DEFAULT_MAX_BODY_BYTES * 0.9 < len(huge) <= DEFAULT_MAX_BODY_BYTES
    full = json.dumps({"instances": batch(1024, seed=1).tolist()}).encode()

    stop = threading.Event()
    small: list[int] = []

    def small_requests() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                small.append(client.post(url, json={"instances": batch(1).tolist()}).status_code)

    def post(body: bytes) -> int:
        try:
            return httpx.post(url, content=body, timeout=120).status_code
        except httpx.TransportError as error:
            return -len(str(error))  # never expected: a connection the server dropped

    prober = threading.Thread(target=small_requests)
    prober.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(post, [huge, full] * 16))
    finally:
        stop.set()
        prober.join(timeout=60)
    burst_s = time.monotonic() - started
    peak = int((memory_cgroup / "memory.max_usage_in_bytes").read_text())

    assert server.process.poll() is None, server.output()
    assert oom_kills(memory_cgroup) == 0
    assert sorted(set(statuses)) <= [200, 413, 429], statuses
    assert statuses[1::2] == [200] * 16, statuses  # 32 in flight: under the default limit of 64
    assert statuses[0::2] == [413] * 16, statuses  # every huge body refused: more values than 1,024 rows hold
    assert small and set(small) == {200}, small[:20]
    print(  # noqa: T201 - the measurement, shown with -s
        f"peak {peak / 2**20:.0f} MiB of {LIMIT_BYTES / 2**20:.0f} MiB; burst {burst_s:.1f} s; "
        f"{len(small)} small requests answered meanwhile; full-size statuses {statuses[1::2]}"
    )
