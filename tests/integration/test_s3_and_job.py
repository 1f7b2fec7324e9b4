"""The engine against S3 through boto3 (moto's server on loopback), and `optimodel job` as the pod runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optimodel.optimize.pipeline import optimize
from optimodel.report import Report
from tests.integration.conftest import DigitsFiles
from tests.integration.specs import digits_spec
from tests.support.s3server import S3Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uploaded(digits: DigitsFiles, s3_server: S3Server) -> S3Server:
    s3_server.upload(digits.model, "s3://models/digits/1/model.h5")
    for name in ("train", "calibration", "test"):
        s3_server.upload(digits.root / f"{name}.npz", f"s3://datasets/digits/{name}.npz")
    return s3_server


def _spec_wire(server: S3Server, artifacts: str) -> dict[str, object]:
    spec = digits_spec("s3://models/digits/1/model.h5", "s3://datasets/digits", artifacts,
                       optimization={"quantization": {"type": "dynamic"}},
                       artifacts={"s3": {"endpoint": server.endpoint}})
    return spec.to_wire()


def _keys(server: S3Server, prefix: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket="artifacts", Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_round_trip_through_s3(uploaded: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in uploaded.env.items():
        monkeypatch.setenv(name, value)
    spec = digits_spec("s3://models/digits/1/model.h5", "s3://datasets/digits", "s3://artifacts/roundtrip",
                       optimization={"quantization": {"type": "dynamic"}},
                       artifacts={"s3": {"endpoint": uploaded.endpoint}})

    first = optimize(spec, lambda fraction, message: None, recipe_key="recipe-1")
    again = optimize(spec, lambda fraction, message: None)

    assert first.artifact is not None and first.artifact.uri == f"s3://artifacts/roundtrip/{first.key}/model.tflite"
    assert _keys(uploaded, "roundtrip/") == sorted([
        f"roundtrip/{first.key}/model.tflite", f"roundtrip/{first.key}/report.json", "roundtrip/recipes/recipe-1.json"])
    body = uploaded.client().get_object(Bucket="artifacts", Key=f"roundtrip/{first.key}/report.json")["Body"].read()
    assert Report.from_json(body).artifact == first.artifact
    pointer = json.loads(uploaded.client().get_object(Bucket="artifacts", Key="roundtrip/recipes/recipe-1.json")
                         ["Body"].read())
    assert pointer == {"key": first.key, "reportUri": f"s3://artifacts/roundtrip/{first.key}/report.json",
                       "artifactUri": first.artifact.uri}
    assert again.cache_hit and again.key == first.key and again.artifact == first.artifact


def _job(env: dict[str, str], termination: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimodel", "job", "--termination-log", str(termination)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def test_job_writes_the_result_and_a_termination_summary(uploaded: S3Server, tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    env = {**uploaded.env, "OPTIMODEL_SPEC": json.dumps(_spec_wire(uploaded, "s3://artifacts/job")),
           "OPTIMODEL_RECIPE_KEY": "recipe-job"}

    result = _job(env, termination)

    assert result.returncode == 0, result.stderr
    summary = json.loads(termination.read_text())
    assert summary["passed"] is True and summary["cacheHit"] is False
    assert summary["artifactUri"] == f"s3://artifacts/job/{summary['key']}/model.tflite"
    assert "progress  30% converting dynamic" in result.stdout
    assert f"job/{summary['key']}/model.tflite" in _keys(uploaded, "job/")


def test_job_reports_bad_input_in_the_termination_message(uploaded: S3Server, tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    wire = _spec_wire(uploaded, "s3://artifacts/badjob")
    wire["source"] = {"uri": "s3://models/digits/9/missing.h5"}

    result = _job({**uploaded.env, "OPTIMODEL_SPEC": json.dumps(wire)}, termination)

    assert result.returncode == 2
    assert json.loads(termination.read_text()) == {
        "error": "s3://models/digits/9/missing.h5 does not exist", "reason": "ObjectNotFound"}
    assert _keys(uploaded, "badjob/") == []
