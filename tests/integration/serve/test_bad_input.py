"""Every kind of bad request gets a 4xx with a message, never a 500, and the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.serve.serve_testkit import Models, Server, StartServer, batch

MAX_BODY = 64 * 1024
GOOD_ROWS = batch(2).tolist()
V2_INPUT = {"name": "input_1", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0.5] * 64}

CASES: list[tuple[str, str, str, bytes | dict[str, object], int, str]] = [
    # id, method, path (NAME = model), body, status, words in the message
    ("v1-malformed-json", "POST", "/v1/models/NAME:predict", b'{"instances": [1,', 400, "malformed JSON"),
    ("v1-not-an-object", "POST", "/v1/models/NAME:predict", b"[1, 2]", 400, "JSON object"),
    (
        "v1-wrong-shape",
        "POST",
        "/v1/models/NAME:predict",
        {"instances": [[1.0, 2.0], [3.0, 4.0]]},
        400,
        "shape",
    ),
    (
        "v1-wrong-inner-dim",
        "POST",
        "/v1/models/NAME:predict",
        {"inputs": batch(1, 0)[:, :7].tolist()},
        400,
        "shape",
    ),
    ("v1-strings", "POST", "/v1/models/NAME:predict", {"instances": [[["a"] * 1] * 8] * 8}, 400, "strings"),
    ("v1-booleans", "POST", "/v1/models/NAME:predict", {"instances": [[[[True]] * 8] * 8]}, 400, "booleans"),
    ("v1-ragged", "POST", "/v1/models/NAME:predict", {"instances": [[1.0], [1.0, 2.0]]}, 400, "ragged"),
    (
        "v1-mixed-formats",
        "POST",
        "/v1/models/NAME:predict",
        {"instances": GOOD_ROWS, "inputs": GOOD_ROWS},
        400,
        "exactly one",
    ),
    ("v1-neither-format", "POST", "/v1/models/NAME:predict", {"data": GOOD_ROWS}, 400, "exactly one"),
    ("v1-empty-instances", "POST", "/v1/models/NAME:predict", {"instances": []}, 400, "non-empty"),
    (
        "v1-unknown-input",
        "POST",
        "/v1/models/NAME:predict",
        {"inputs": {"pixels": GOOD_ROWS}},
        400,
        "unknown input",
    ),
    (
        "v1-unknown-signature",
        "POST",
        "/v1/models/NAME:predict",
        {"signature_name": "x", "instances": GOOD_ROWS},
        400,
        "signature",
    ),
    ("v1-unknown-model", "POST", "/v1/models/other:predict", {"instances": GOOD_ROWS}, 404, "not found"),
    (
        "v1-unknown-version",
        "POST",
        "/v1/models/NAME/versions/7:predict",
        {"instances": GOOD_ROWS},
        404,
        "version",
    ),
    ("v1-unknown-model-status", "GET", "/v1/models/other", b"", 404, "not found"),
    ("v1-get-predict", "GET", "/v1/models/NAME:predict", b"", 405, "not allowed"),
    ("v2-malformed-json", "POST", "/v2/models/NAME/infer", b"{nope", 400, "malformed JSON"),
    ("v2-missing-fields", "POST", "/v2/models/NAME/infer", {"inputs": [{"name": "input_1"}]}, 400, "shape"),
    (
        "v2-wrong-datatype",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [{**V2_INPUT, "datatype": "FP64"}]},
        400,
        "datatype",
    ),
    (
        "v2-wrong-data-kind",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [{**V2_INPUT, "data": ["x"] * 64}]},
        400,
        "strings",
    ),
    (
        "v2-wrong-shape",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [{**V2_INPUT, "shape": [1, 64]}]},
        400,
        "shape",
    ),
    (
        "v2-data-not-filling-shape",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [{**V2_INPUT, "shape": [2, 8, 8, 1]}]},
        400,
        "do not fill",
    ),
    (
        "v2-negative-shape",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [{**V2_INPUT, "shape": [-1, 8, 8, 1]}]},
        400,
        "negative",
    ),
    (
        "v2-unknown-input",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [{**V2_INPUT, "name": "x"}]},
        400,
        "unknown input",
    ),
    ("v2-no-inputs", "POST", "/v2/models/NAME/infer", {"inputs": []}, 400, "missing input"),
    (
        "v2-duplicate-input",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [V2_INPUT, V2_INPUT]},
        400,
        "more than once",
    ),
    (
        "v2-unknown-output",
        "POST",
        "/v2/models/NAME/infer",
        {"inputs": [V2_INPUT], "outputs": [{"name": "x"}]},
        400,
        "unknown output",
    ),
    ("v2-unknown-model", "POST", "/v2/models/other/infer", {"inputs": [V2_INPUT]}, 404, "not found"),
    ("v2-unknown-model-metadata", "GET", "/v2/models/other", b"", 404, "not found"),
    ("unknown-route", "GET", "/v3/anything", b"", 404, "not found"),
    (
        "oversized-body",
        "POST",
        "/v1/models/NAME:predict",
        b'{"instances": [' + b"0.1," * MAX_BODY + b"0.1]}",
        413,
        "size",
    ),
    ("v2-oversized-body", "POST", "/v2/models/NAME/infer", b" " * (MAX_BODY + 1), 413, "size"),
]


@pytest.fixture
def server(start_server: StartServer, models: Models) -> Server:
    return start_server(models.float32, "--max-body-bytes", str(MAX_BODY))


def test_bad_requests_get_4xx_with_a_message(server: Server) -> None:
    """All cases against one server (one start, fast): each is 4xx JSON, then the server still answers."""
    failures = []
    with httpx.Client(base_url=server.url) as client:
        for case, method, path, body, status, words in CASES:
            request = {"content": body} if isinstance(body, bytes) else {"json": body}
            answer = client.request(method, path.replace("NAME", server.name), **request)
            message = (
                answer.json().get("error", "")
                if answer.headers.get("content-type", "").startswith("application/json")
                else ""
            )
            if answer.status_code != status or words.lower() not in message.lower():
                failures.append(f"{case}: {answer.status_code} {answer.text[:200]}")
        assert not failures, "\n".join(failures)
        assert (
            client.post(f"/v1/models/{server.name}:predict", json={"instances": GOOD_ROWS}).status_code == 200
        )
    assert server.process.poll() is None
    assert "Traceback" not in server.output()
