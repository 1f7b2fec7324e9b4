"""What a hostile or broken S3 endpoint can do to the operator: nothing it can read back, no unbounded
read, no call without a deadline, no file written outside a download folder.

Real servers on loopback: moto for S3 and tiny HTTP servers for endpoints that misbehave.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from optimodel.errors import ObjectTooLarge, StorageError
from optimodel.spec import S3Settings
from optimodel.storage import Limits
from optimodel.storage.s3 import S3Store
from tests.support.s3server import free_port

MARKER = "internal-admin-page-7f3a9c"  # what an internal service would show; must never reach a message
FAST = Limits(connect_timeout=1, read_timeout=1, max_attempts=1)


class _Page(http.server.BaseHTTPRequestHandler):
    """An internal web service: 404 to HEAD; to a GET (the list call) a page instead of XML, or an
    S3-shaped error document whose code and message carry the service's own text."""

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(404)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        if "error" in self.path:
            status, body = 400, f"<Error><Code>{MARKER}</Code><Message>{MARKER} hunter2</Message></Error>".encode()
        else:
            status, body = 200, f"<!doctype html><html><body><p>{MARKER} db-password=hunter2<br></body>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


class _Endless(http.server.BaseHTTPRequestHandler):
    """An object that never ends: 200, no length, bytes forever."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x" * 65536)
        except OSError:
            pass

    def log_message(self, *_: Any) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def page() -> Iterator[str]:
    yield from _serve(_Page)


@pytest.fixture
def endless() -> Iterator[str]:
    yield from _serve(_Endless)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    store(endpoint, Limits())._client.create_bucket(Bucket="results")
    try:
        yield endpoint
    finally:
        server.stop()


def store(endpoint: str, limits: Limits = FAST) -> S3Store:
    return S3Store(S3Settings(endpoint=endpoint), ("test", "test"), limits)


@pytest.mark.parametrize("bucket", ["pages", "error"])
def test_what_a_remote_server_says_never_reaches_the_message(page: str, bucket: str) -> None:
    with pytest.raises(StorageError) as raised:
        store(page).info(f"s3://{bucket}/model.h5")
    assert MARKER not in str(raised.value) and "hunter2" not in str(raised.value)
    assert page in str(raised.value)  # it names the endpoint at fault


def test_reads_are_capped(endless: str) -> None:
    started = time.monotonic()
    with pytest.raises(ObjectTooLarge):
        store(endless).read_bytes("s3://bucket/report.json", max_bytes=1 << 20)
    assert time.monotonic() - started < 10


def test_a_silent_endpoint_costs_bounded_time(silent: str) -> None:
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        store(silent).info("s3://bucket/model.h5")
    assert time.monotonic() - started < 10
    assert "did not answer in time" in str(raised.value)


def test_a_directory_download_refuses_keys_escaping_the_folder(moto: str, tmp_path: Path) -> None:
    s3 = store(moto, Limits())
    s3._client.create_bucket(Bucket="escape")
    s3._client.put_object(Bucket="escape", Key="model/saved_model.pb", Body=b"ok")
    s3._client.put_object(Bucket="escape", Key="model/../../outside.txt", Body=b"pwned")
    target = tmp_path / "a" / "b" / "model"
    with pytest.raises(StorageError, match="outside the download folder"):
        s3.download("s3://escape/model", target)
    assert not list(tmp_path.rglob("outside.txt"))
