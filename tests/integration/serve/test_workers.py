"""`--workers 2`: two server processes on one port, both answering; SIGTERM drains and stops all."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np

from tests.integration.serve.serve_testkit import (
    Models,
    Oracle,
    StartServer,
    batch,
    in_background,
    wait_in_flight,
)

V2_INFER = "/v2/models/{name}/infer"
SLOW_ROWS = 600


def worker_pids(pid: int) -> list[int]:
    """The children of `pid` but multiprocessing's resource tracker."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    pids = [int(line) for line in out.split()]
    return [p for p in pids if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def worker_of_scrape(url: str) -> str:
    """The `worker` label of the process that answered, on a fresh connection each time."""
    for line in httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text.splitlines():
        if line.startswith("optimodel_worker{"):
            return line.split('worker="', 1)[1].split('"', 1)[0]
    raise AssertionError("no optimodel_worker in /metrics")


def v2_body(x: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "input_1", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def test_two_workers_answer_and_sigterm_stops_all(
    start_server: StartServer, models: Models, oracle: Oracle
) -> None:
    server = start_server(models.slow, "--workers", "2", "--interpreters", "1")
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2, server.output()

    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while seen != {"0", "1"}:  # the kernel spreads new connections over both listeners
        assert time.monotonic() < deadline, f"only worker(s) {seen} answered:\n{server.output()}"
        seen.add(worker_of_scrape(server.url))
    for _ in range(8):  # every worker is ready and answers inference, each on a fresh connection
        assert httpx.get(f"{server.url}/v2/health/ready", headers={"Connection": "close"}).status_code == 200
    x = batch(3, seed=9)
    url = server.url + V2_INFER.format(name=server.name)
    for _ in range(8):
        answer = httpx.post(url, json=v2_body(x), headers={"Connection": "close"})
        assert answer.status_code == 200, answer.text
        data = np.reshape(answer.json()["outputs"][0]["data"], (3, 10))
        assert np.allclose(data, oracle(models.slow, x), atol=1e-5)

    big = batch(SLOW_ROWS, seed=5)
    slow = in_background(lambda: httpx.post(url, json=v2_body(big), timeout=60))
    wait_in_flight(server.url)
    server.process.send_signal(signal.SIGTERM)
    response = slow()
    assert response.status_code == 200, response.text  # drained by whichever worker had it
    data = np.reshape(response.json()["outputs"][0]["data"], (SLOW_ROWS, 10))
    assert np.allclose(data, oracle(models.slow, big), atol=1e-5)
    assert server.process.wait(timeout=20) == 0, server.output()
    assert not any(alive(pid) for pid in workers)
    assert server.output().count("drained; exiting") == 2
