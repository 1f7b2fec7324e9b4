"""Shadow mirroring between two real `optimodel serve` processes on real LiteRT models, over real HTTP.

The serving server copies its inference requests to a candidate server and compares the answers;
the oracle is LiteRT called directly on both models (`litert_predict`), never the server's code.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.integration.serve.serve_testkit import (
    NAME,
    Models,
    Oracle,
    Server,
    StartServer,
    free_port,
    sha256,
    wait_until,
)

ROWS_PER_REQUEST = 4
REQUESTS = 24  # half of them v1, half v2


def metric(server: Server, name: str, candidate: str | None = None) -> float:
    """A value of the server's /metrics, 0 when absent."""
    wanted = f'{name}{{candidate="{candidate}"}} ' if candidate is not None else f"{name} "
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def inputs(seed: int) -> np.ndarray:
    """Random images: an untrained model is unsure on them, so int8 and float32 disagree on some rows."""
    return np.random.default_rng(seed).random((ROWS_PER_REQUEST, 8, 8, 1), dtype=np.float32)


def send(server: Server, batch: np.ndarray, version: str) -> np.ndarray:
    if version == "v1":
        response = httpx.post(f"{server.url}/v1/models/{NAME}:predict", json={"instances": batch.tolist()})
        assert response.status_code == 200, response.text
        return np.asarray(response.json()["predictions"])
    meta = httpx.get(f"{server.url}/v2/models/{NAME}").json()
    body = {"inputs": [{"name": meta["inputs"][0]["name"], "shape": list(batch.shape), "datatype": "FP32",
                        "data": batch.ravel().tolist()}]}
    response = httpx.post(f"{server.url}/v2/models/{NAME}/infer", json=body)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    return np.asarray(output["data"]).reshape(output["shape"])


@pytest.mark.parametrize(("compare", "other"), [("classes", "int8"), ("values", "int8"), ("classes", "slow")])
def test_mirrored_answers_are_compared_as_litert_compares_them(
    models: Models, oracle: Oracle, start_server: StartServer, compare: str, other: str
) -> None:
    """int8: the same model quantized; slow: another model (its output named otherwise)."""
    model = getattr(models, other)
    candidate_sha = sha256(model)
    candidate = start_server(model, "--sha256", candidate_sha)
    serving = start_server(models.float32, "--mirror-url", candidate.url, "--mirror-compare", compare)

    batches = [inputs(seed) for seed in range(REQUESTS)]
    for index, batch in enumerate(batches):
        answer = send(serving, batch, "v1" if index % 2 else "v2")
        np.testing.assert_allclose(answer, oracle(models.float32, batch), rtol=1e-5, atol=1e-6)

    wait_until(
        lambda: metric(serving, "optimodel_shadow_requests_total", candidate_sha) >= REQUESTS,
        30, "every request mirrored", serving,
    )
    ours = np.concatenate([oracle(models.float32, b) for b in batches])
    theirs = np.concatenate([oracle(model, b) for b in batches])
    rows = REQUESTS * ROWS_PER_REQUEST
    assert metric(serving, "optimodel_shadow_errors_total", candidate_sha) == 0
    if compare == "classes":
        agreeing = int(np.sum(ours.argmax(axis=1) == theirs.argmax(axis=1)))
        assert 0 < agreeing < rows, "the inputs must tell agreement from disagreement"
        assert metric(serving, "optimodel_shadow_compared_total", candidate_sha) == rows
        assert metric(serving, "optimodel_shadow_agreeing_total", candidate_sha) == agreeing
    else:
        assert metric(serving, "optimodel_shadow_compared_total", candidate_sha) == ours.size
        difference = metric(serving, "optimodel_shadow_absolute_difference_total", candidate_sha)
        assert difference == pytest.approx(float(np.abs(ours - theirs).sum()), rel=1e-3)
        assert difference > 0
    # Both models' inference times, one observation per mirrored request each.
    for name in ("serving", "candidate"):
        count = metric(serving, f"optimodel_shadow_{name}_inference_seconds_count", candidate_sha)
        assert count == REQUESTS, name
    # The candidate itself was asked exactly the mirrored requests, over v2.
    v2_infer = 'optimodel_requests_total{code="200",protocol="v2",route="/v2/models/{name}/infer"} '
    answered = [line for line in httpx.get(candidate.url + "/metrics").text.splitlines() if line.startswith(v2_infer)]
    assert answered and float(answered[0].rsplit(" ", 1)[1]) == REQUESTS


def test_clients_never_wait_for_a_candidate_that_hangs(
    models: Models, start_server: StartServer, silent: str
) -> None:
    serving = start_server(models.float32, "--mirror-url", silent, "--mirror-timeout-seconds", "600")
    sent = 100
    for seed in range(sent):
        send(serving, inputs(seed), "v2")  # each is answered although no mirrored copy ever is
    # Two copies are held by the senders, 64 wait in the queue: the rest were dropped, not queued.
    dropped = metric(serving, "optimodel_shadow_dropped_total")
    assert sent - 64 - 2 <= dropped <= sent - 64
    assert metric(serving, "optimodel_shadow_errors_total", "unknown") == 0  # none timed out yet
    assert serving.stop() == 0, serving.output()  # the hung copies do not hold the shutdown


def test_an_unreachable_candidate_counts_errors_and_clients_see_none(
    models: Models, start_server: StartServer
) -> None:
    """No candidate listening (a shadow Service without endpoints): one error per sender at most, then
    the mirror pauses (here longer than the test) instead of trying once per request."""
    url = f"http://127.0.0.1:{free_port()}"
    serving = start_server(models.float32, "--mirror-url", url, "--mirror-pause-seconds", "600")
    for seed in range(50):
        send(serving, inputs(seed), "v1")
    wait_until(
        lambda: metric(serving, "optimodel_shadow_errors_total", "unknown") >= 1, 30, "an error", serving
    )
    assert metric(serving, "optimodel_shadow_errors_total", "unknown") in (1, 2)  # two senders
    assert 'optimodel_request_errors_total{' not in httpx.get(serving.url + "/metrics").text


def test_a_candidate_that_refuses_is_judged_by_its_errors(models: Models, start_server: StartServer) -> None:
    """A candidate serving another model name answers 404: its errors, labelled with its sha256."""
    candidate_sha = sha256(models.int8)
    candidate = start_server(models.int8, "--sha256", candidate_sha, "--name", "other")
    serving = start_server(models.float32, "--mirror-url", candidate.url)
    for seed in range(5):
        send(serving, inputs(seed), "v2")
    wait_until(
        lambda: metric(serving, "optimodel_shadow_errors_total", candidate_sha) >= 5, 30, "five errors", serving
    )
    assert metric(serving, "optimodel_shadow_errors_total", candidate_sha) == 5
    assert metric(serving, "optimodel_shadow_requests_total", candidate_sha) == 0


def test_a_candidate_that_went_away_is_charged_one_error_per_sender_at_most(
    models: Models, start_server: StartServer
) -> None:
    """Its analysis ended and its pods stopped: the failures that follow are no candidate's, so an
    analysis reopened later does not count the time the candidate did not run."""
    candidate_sha = sha256(models.int8)
    candidate = start_server(models.int8, "--sha256", candidate_sha)
    serving = start_server(models.float32, "--mirror-url", candidate.url, "--mirror-pause-seconds", "0.2")
    for seed in range(3):
        send(serving, inputs(seed), "v2")
    wait_until(
        lambda: metric(serving, "optimodel_shadow_requests_total", candidate_sha) == 3, 30, "3 copies", serving
    )
    assert candidate.stop() == 0, candidate.output()

    def another_request_fails_later() -> bool:  # over several pauses: each ends with another failed attempt
        send(serving, inputs(0), "v1")
        return metric(serving, "optimodel_shadow_errors_total", "unknown") >= 2

    wait_until(another_request_fails_later, 30, "later errors", serving)
    assert 1 <= metric(serving, "optimodel_shadow_errors_total", candidate_sha) <= 2  # two senders
    assert metric(serving, "optimodel_shadow_requests_total", candidate_sha) == 3
