"""A stored result is reused only when it checks out: a recipe pointer's report under the resource's own
prefix, a report a Job could have written, an artifact under the prefix with the size and sha256 the
report names. Whoever can write the bucket must not decide what another resource serves.

moto on loopback (the fixture of test_storage_safety).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from optimodel.controller.artifacts import Artifacts, InvalidResult, pointer_uri
from optimodel.report import ArtifactInfo, Report, SourceInfo
from optimodel.spec import parse_spec
from optimodel.storage import Limits
from optimodel.storage.s3 import S3Store
from tests.integration.test_storage_safety import MARKER, moto, store

__all__ = ["moto"]  # the fixture, shared

SPEC = {
    "source": {"uri": "s3://results/models/m.h5"},
    "evaluation": {"data": "s3://results/data/test.npz"},
    "artifacts": {"uri": "s3://results/team-a/", "s3": {"credentialsSecret": "s"}},
}


def _report(artifact_uri: str, data: bytes, sha256: str | None = None) -> Report:
    return Report.model_validate(
        {
            "key": artifact_uri.rsplit("/", 2)[-2],
            "source": SourceInfo(uri="s3://results/models/m.h5", size_bytes=10, sha256="0" * 64),
            "artifact": ArtifactInfo(
                uri=artifact_uri, size_bytes=len(data), gzip_bytes=len(data),
                sha256=sha256 or hashlib.sha256(data).hexdigest()),
            "method": "quantize",
            "passed": True,
        }
    )


def _publish(s3: S3Store, key: str, report: Report, data: bytes, pointer_report: str) -> None:
    spec = parse_spec(SPEC)
    assert report.artifact is not None
    s3.put_bytes(report.artifact.uri, data)
    s3.put_bytes(pointer_report, report.to_json().encode())
    s3.put_bytes(pointer_uri(spec, key), json.dumps({"reportUri": pointer_report, "key": key}).encode())


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("good", None),
        ("report outside the prefix", "not under this resource's prefix"),
        ("artifact outside the prefix", "outside the prefix"),
        ("wrong digest", "does not have the sha256"),
        ("artifact gone", "does not exist"),
    ],
)
def test_a_stored_result_is_reused_only_when_it_checks_out(moto: str, case: str, message: str | None) -> None:
    s3 = store(moto, Limits())
    spec, key, data = parse_spec(SPEC), f"k{abs(hash(case))}", b"tflite bytes " + case.encode()
    prefix = "s3://results/team-a" if case != "report outside the prefix" else "s3://results/team-b"
    artifact = f"{prefix}/{key}/model.tflite" if case != "artifact outside the prefix" else "s3://results/x/m.tflite"
    report = _report(artifact, data, sha256="f" * 64 if case == "wrong digest" else None)
    _publish(s3, key, report, data, f"{prefix}/{key}/report.json")
    if case == "artifact gone":
        s3.delete(artifact)
    artifacts = Artifacts()
    if message is None:
        found = artifacts.stored_result(s3, spec, key)
        assert found is not None and found[0].artifact == report.artifact
        return
    with pytest.raises(InvalidResult, match=message):
        artifacts.stored_result(s3, spec, key)


def test_a_pointer_that_is_not_json_says_so_without_quoting_it(moto: str) -> None:
    s3 = store(moto, Limits())
    spec = parse_spec(SPEC)
    s3.put_bytes(pointer_uri(spec, "bad"), f"<html>{MARKER}</html>".encode())
    with pytest.raises(InvalidResult) as raised:
        Artifacts().stored_result(s3, spec, "bad")
    assert MARKER not in str(raised.value)
