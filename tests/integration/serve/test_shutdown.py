"""SIGTERM costs clients nothing: unready first, serving through the drain delay, then a graceful close.

What a rollout needs from the server itself (the cluster test through a Service's ClusterIP proves
the whole path): readiness turns 503 at once; new connections are still accepted and answered for
the drain delay; every answer from SIGTERM on says `Connection: close`, so keep-alive clients leave;
a request in flight when the listener closes (here one whose body is still arriving) is answered;
idle keep-alive connections are closed by the server; the process exits 0 within its grace period.
Each with one worker and with two (SIGTERM forwarded to both by the parent).
"""

from __future__ import annotations

import json
import signal
import socket
import time

import httpx
import pytest

from tests.integration.serve.serve_testkit import Models, Server, StartServer, batch
from tests.support.polling import wait_for

DELAY_S = 2.0
DRAIN_S = 10.0
V2_INFER = "/v2/models/{name}/infer"


def v2_body(rows: int) -> bytes:
    x = batch(rows, seed=3)
    tensor = {"name": "input_1", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: status, lower-cased headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def refused(server: Server) -> bool:
    try:
        socket.create_connection(address(server), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_keeps_every_request(start_server: StartServer, models: Models, workers: int) -> None:
    server = start_server(
        models.float32,
        "--workers", str(workers),
        "--drain-delay-seconds", str(DELAY_S),
        "--drain-seconds", str(DRAIN_S),
    )  # fmt: skip
    infer = server.url + V2_INFER.format(name=server.name)
    path = V2_INFER.format(name=server.name)
    body = v2_body(4)
    # Workers sharing the port load their models each on its own: the server answering ready once
    # says one is. Wait until fresh connections (spread over the workers) all get answers.
    wait_for(
        "every worker answering",
        lambda: all(
            httpx.post(infer, content=body, headers={"Connection": "close"}).status_code == 200 for _ in range(8)
        ),
        timeout=60,
    )
    keep_alive = httpx.Client(timeout=10)
    first = keep_alive.post(infer, content=body)
    assert first.status_code == 200 and first.headers.get("connection") != "close"
    idle = socket.create_connection(address(server))  # a used keep-alive connection, then idle
    idle.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(idle)[0] == 200
    slow = socket.create_connection(address(server))  # its request will still be arriving at close

    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    wait_for(
        "readiness 503",
        lambda: httpx.get(f"{server.url}/v2/health/ready", headers={"Connection": "close"}).status_code == 503,
        timeout=1,
        interval=0.02,
    )
    unready_after = time.monotonic() - signalled

    fresh = httpx.post(infer, content=body, timeout=10)  # a new connection during the delay
    assert fresh.status_code == 200, fresh.text
    assert fresh.headers["connection"] == "close"
    again = keep_alive.post(infer, content=body)  # the keep-alive client's next request
    assert again.status_code == 200, again.text
    assert again.headers["connection"] == "close"

    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slow.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
    wait_for("the listener to close", lambda: refused(server), timeout=DELAY_S + 5, interval=0.05)
    closed_after = time.monotonic() - signalled
    slow.sendall(body[100:])
    status, headers, answer = read_response(slow)
    assert status == 200, answer
    assert headers["connection"] == "close"
    assert len(json.loads(answer)["outputs"][0]["data"]) == 4 * 10

    idle.settimeout(DRAIN_S)
    assert idle.recv(1) == b"", "the idle keep-alive connection was not closed by the server"
    assert server.process.wait(timeout=DELAY_S + DRAIN_S + 5) == 0, server.output()
    exited_after = time.monotonic() - signalled

    assert unready_after < 1.0
    assert closed_after >= DELAY_S * 0.9, f"stopped accepting {closed_after:.2f} s after SIGTERM"
    assert exited_after < DELAY_S + DRAIN_S
    print(  # noqa: T201 - the measured timeline, shown with -s
        f"workers={workers}: unready {unready_after:.3f} s, listener closed {closed_after:.2f} s, "
        f"exited {exited_after:.2f} s after SIGTERM"
    )
