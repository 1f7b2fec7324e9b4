"""16 concurrent clients for a few seconds on both protocols; every answer checked against LiteRT."""

from __future__ import annotations

import random
import threading
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.serve.serve_testkit import Models, Oracle, StartServer, batch

CLIENTS = 16


def calls_and_requests(metrics: str) -> tuple[float, float]:
    """Interpreter calls made, and inference requests answered, from a `/metrics` scrape."""
    calls = requests = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "optimodel_batch_size_count":
                calls += sample.value
            if sample.name == "optimodel_requests_total" and sample.labels["route"].endswith(
                ("/infer", ":predict")
            ):
                requests += sample.value
    return calls, requests


@pytest.mark.parametrize(
    ("flags", "batching"),
    [
        pytest.param(("--interpreters", "2", "--batch-wait-ms", "0"), False, id="pool"),
        pytest.param(
            ("--interpreters", "2", "--batch-wait-ms", "2", "--max-batch-size", "16"),
            True,
            id="dynamic-batching",
        ),
        pytest.param(
            ("--interpreters", "1", "--batch-wait-ms", "2", "--max-batch-size", "16"),
            True,
            id="one-interpreter-on-the-event-loop",
        ),
    ],
)
def test_concurrent_clients_get_their_own_answers(
    start_server: StartServer,
    models: Models,
    oracle: Oracle,
    flags: tuple[str, ...],
    batching: bool,
) -> None:
    seconds = 2.5
    server = start_server(models.int8, *flags)
    rows = batch(64, seed=3)
    expected = oracle(models.int8, rows)
    counts: list[int] = []
    failures: list[str] = []
    start = threading.Barrier(CLIENTS)  # the clock starts when every client is built (busy CI machines)

    def client(seed: int) -> None:
        rng = random.Random(seed)
        done = 0
        with httpx.Client(base_url=server.url, timeout=30) as http:
            start.wait()
            deadline = time.monotonic() + seconds
            while (done == 0 or time.monotonic() < deadline) and not failures:
                picked = rng.sample(range(len(rows)), rng.randint(1, 3))
                x = rows[picked]
                if rng.random() < 0.5:
                    answer = http.post(f"/v1/models/{server.name}:predict", json={"instances": x.tolist()})
                    got = np.asarray(answer.json().get("predictions")) if answer.status_code == 200 else None
                else:
                    answer = http.post(
                        f"/v2/models/{server.name}/infer",
                        json={
                            "inputs": [
                                {
                                    "name": "input_1",
                                    "shape": list(x.shape),
                                    "datatype": "FP32",
                                    "data": x.ravel().tolist(),
                                }
                            ]
                        },
                    )
                    got = (
                        np.reshape(answer.json()["outputs"][0]["data"], (len(picked), 10))
                        if answer.status_code == 200
                        else None
                    )
                if got is None or not np.allclose(got, expected[picked], atol=1e-6):
                    failures.append(f"client {seed}: {answer.status_code} {answer.text[:200]}")
                done += 1
        counts.append(done)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    assert len(counts) == CLIENTS and min(counts) > 0
    metrics = httpx.get(f"{server.url}/metrics").text
    calls, requests = calls_and_requests(metrics)
    assert requests >= sum(counts)
    if batching:  # concurrent requests shared interpreter calls
        assert calls < requests
    else:
        assert calls == requests
    assert "optimodel_request_errors_total" not in metrics.replace(
        "# HELP optimodel_request_errors_total", ""
    ).replace("# TYPE optimodel_request_errors_total", "")
