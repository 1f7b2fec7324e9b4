"""Fixtures every test folder may use: the test S3 server and small real data."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.s3server import S3Server, start_s3_server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto in server mode on loopback, with authentication on and buckets models/datasets/artifacts."""
    server = start_s3_server("127.0.0.1", tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()
