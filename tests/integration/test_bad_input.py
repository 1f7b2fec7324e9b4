"""Bad input: each case a clear message naming the field or URI at fault, and no artifact written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from optimodel.errors import AccessDeniedError, InputError, NotFoundError, StorageError
from optimodel.optimize.pipeline import optimize
from tests.integration.conftest import DigitsFiles
from tests.integration.specs import digits_spec, digits_wire
from tests.support.s3server import S3Server

pytestmark = pytest.mark.slow


def quiet(fraction: float, message: str) -> None:
    """The engine reports progress; these tests only look at the outcome."""


def attempt(digits: DigitsFiles, artifacts: Path, model: str | None = None, data_root: str | None = None,
            **changes: object) -> None:
    spec = digits_spec(model or digits.uri(digits.model), data_root or f"file://{digits.root}",
                       f"file://{artifacts}", **changes)
    try:
        optimize(spec, quiet)
    finally:
        assert not artifacts.exists() or not any(artifacts.iterdir()), "a failed run must write nothing"


def refused(digits: DigitsFiles, folder: Path, **changes: object) -> str:
    """A manifest the spec's checks refuse, run through `optimodel run` (the spec is parsed there, not
    here): exit code 2 and nothing written. Returns what it printed on stderr."""
    artifacts = folder / "out"
    wire = digits_wire(digits.uri(digits.model), f"file://{digits.root}", f"file://{artifacts}", **changes)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "optimodel.io/v1alpha1", "kind": "OptimizedModel",
                                    "metadata": {"name": "digits"}, "spec": wire}))
    result = _cli("run", str(path))
    assert result.returncode == 2, result.stderr
    assert not artifacts.exists() or not any(artifacts.iterdir()), "a failed run must write nothing"
    return result.stderr


def test_missing_source(digits: DigitsFiles, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"file:///nowhere/model.h5 does not exist"):
        attempt(digits, tmp_path / "out", model="file:///nowhere/model.h5")


def test_missing_data_object(digits: DigitsFiles, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"/missing/test.npz does not exist"):
        attempt(digits, tmp_path / "out", evaluation={"data": f"file://{tmp_path}/missing/test.npz"})


def test_corrupt_model_file(digits: DigitsFiles, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not an HDF5 file" * 100)
    with pytest.raises(InputError, match=r"spec.source.uri: .*corrupt.h5 could not be loaded as a model"):
        attempt(digits, tmp_path / "out", model=f"file://{corrupt}")


def test_npz_without_x_and_y(digits: DigitsFiles, tmp_path: Path) -> None:
    np.savez(tmp_path / "test.npz", images=np.zeros((3, 8, 8, 1)))
    with pytest.raises(InputError, match=r"spec.evaluation.data: the .npz needs arrays x and y; it has \['images'\]"):
        attempt(digits, tmp_path / "out", evaluation={"data": f"file://{tmp_path}/test.npz"})


def test_data_that_does_not_fit_the_model(digits: DigitsFiles, tmp_path: Path) -> None:
    np.savez(tmp_path / "test.npz", x=np.zeros((5, 64), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(InputError, match=r"spec.evaluation.data: x has samples of shape \(64,\), "
                                         r"the model expects inputs of shape \(None, 8, 8, 1\)"):
        attempt(digits, tmp_path / "out", evaluation={"data": f"file://{tmp_path}/test.npz"})


def test_int8_without_calibration_data(digits: DigitsFiles, tmp_path: Path) -> None:
    stderr = refused(digits, tmp_path, optimization={"quantization": {"type": "int8", "calibrationData": None}})
    assert "calibrationData is required for type int8" in stderr


@pytest.mark.parametrize("sparsity", [0.0, 1.0, 1.5, -0.1])
def test_target_sparsity_outside_the_open_interval(digits: DigitsFiles, tmp_path: Path, sparsity: float) -> None:
    stderr = refused(digits, tmp_path, optimization={"method": "prune", "pruning": {
        "targetSparsity": sparsity, "trainingData": f"file://{digits.root}/train.npz"}})
    assert "spec.optimization.pruning.targetSparsity: Input should be" in stderr


@pytest.mark.parametrize("model", ["keras3_model", "subclassed"])
def test_pruning_a_model_tfmot_cannot_prune(digits: DigitsFiles, tmp_path: Path, model: str) -> None:
    with pytest.raises(InputError, match=r"spec.optimization.pruning: .*(Keras 2|subclassed)"):
        attempt(digits, tmp_path / "out", model=digits.uri(getattr(digits, model)), optimization={
            "method": "prune", "pruning": {"trainingData": f"file://{digits.root}/train.npz", "fineTuneEpochs": 1}})


def _s3_spec(digits: DigitsFiles, endpoint: str) -> object:
    return digits_spec("s3://models/digits/model.h5", "s3://datasets/digits", "s3://artifacts/digits",
                       artifacts={"s3": {"endpoint": endpoint}})


def test_unreachable_s3_endpoint(digits: DigitsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageError, match=r"cannot reach the S3 endpoint http://127.0.0.1:9 for s3://models/"):
        optimize(_s3_spec(digits, "http://127.0.0.1:9"), quiet)  # type: ignore[arg-type]


def test_wrong_s3_credentials(digits: DigitsFiles, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(AccessDeniedError, match=r"refused the credentials for s3://models/digits/model.h5"):
        optimize(_s3_spec(digits, s3_server.endpoint), quiet)  # type: ignore[arg-type]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimodel", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("manifest", "message"), [
    ("kind: OptimizedModel\nspec: {source: {uri: 'http://x'}}\n", "spec.source.uri: String should match pattern"),
    ("not: [valid", "is not valid YAML"),
    ("kind: Deployment\nspec: {}\n", "kind is 'Deployment', expected OptimizedModel"),
])
def test_cli_refuses_a_bad_manifest_with_exit_code_2(tmp_path: Path, manifest: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(manifest)
    result = _cli("run", str(path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_cli_exit_code_1_when_a_gate_fails(digits: DigitsFiles, tmp_path: Path,
                                           write_manifest: Callable[..., Path]) -> None:
    path = write_manifest(tmp_path, gates={"maxSizeRatio": 0.01})
    result = _cli("run", str(path), "--output", "json")
    assert result.returncode == 1, result.stderr
    assert '"name": "maxSizeRatio"' in result.stdout and '"passed": false' in result.stdout
