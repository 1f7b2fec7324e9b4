"""Each optimization method on a small real model, with real TensorFlow and LiteRT."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from optimodel.optimize.pipeline import optimize
from optimodel.report import Report
from optimodel.spec import load_manifest
from tests.integration.conftest import DigitsFiles
from tests.integration.specs import digits_spec

pytestmark = pytest.mark.slow


def quiet(fraction: float, message: str) -> None:
    assert 0.0 <= fraction <= 1.0


def run(digits: DigitsFiles, artifacts: Path, **changes: object) -> Report:
    spec = digits_spec(digits.uri(digits.model), f"file://{digits.root}", f"file://{artifacts}", **changes)
    return optimize(spec, quiet)


def stored(report: Report) -> tuple[bytes, dict[str, object]]:
    assert report.artifact is not None
    folder = Path(report.artifact.uri.removeprefix("file://")).parent
    return (folder / "model.tflite").read_bytes(), json.loads((folder / "report.json").read_text())


@pytest.mark.parametrize(("kind", "largest_ratio", "input_dtype"), [
    ("int8", 0.26, np.int8), ("dynamic", 0.26, np.float32), ("float16", 0.51, np.float32)])
def test_quantization_shrinks_the_model_and_keeps_accuracy(
        digits: DigitsFiles, tmp_path: Path, kind: str, largest_ratio: float, input_dtype: type) -> None:
    report = run(digits, tmp_path, optimization={"quantization": {"type": kind}})

    model, on_disk = stored(report)
    assert report.passed and report.quantization == kind
    assert report.metrics is not None and report.artifact is not None
    assert report.metrics.size_ratio < largest_ratio
    assert report.metrics.baseline > 0.85 and report.metrics.drop <= 0.02
    assert hashlib.sha256(model).hexdigest() == report.artifact.sha256
    assert report.artifact.gzip_bytes == len(gzip.compress(model, 9))
    assert on_disk["key"] == report.key and on_disk["passed"] is True
    interpreter = Interpreter(model_content=model)
    assert interpreter.get_input_details()[0]["dtype"] == input_dtype


def test_the_same_spec_reuses_the_stored_result_and_regates_it(digits: DigitsFiles, tmp_path: Path) -> None:
    first = run(digits, tmp_path, optimization={"quantization": {"type": "dynamic"}})
    again = run(digits, tmp_path, optimization={"quantization": {"type": "dynamic"}})
    tightened = run(digits, tmp_path, optimization={"quantization": {"type": "dynamic"}},
                    gates={"maxSizeRatio": 0.01})

    assert not first.cache_hit and again.cache_hit and tightened.cache_hit
    assert again.key == first.key == tightened.key
    assert [p.name for p in tmp_path.iterdir()] == [first.key]
    assert not tightened.passed
    (failed,) = tightened.failed_gates()
    assert failed.name == "maxSizeRatio" and failed.threshold == 0.01
    assert failed.actual == pytest.approx(first.metrics.size_ratio if first.metrics else 0)


def test_reusing_a_stored_result_imports_no_tensorflow(
        digits: DigitsFiles, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = write_manifest(tmp_path, optimization={"quantization": {"type": "dynamic"}})
    first = optimize(load_manifest(manifest).spec, quiet)

    again = subprocess.run([sys.executable, "-X", "importtime", "-m", "optimodel", "run", str(manifest),
                            "--output", "json"], capture_output=True, text=True, timeout=120)

    assert again.returncode == 0, again.stderr[-2000:]
    report = Report.model_validate_json(again.stdout)
    assert report.cache_hit and report.key == first.key
    lines = again.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    assert "optimodel.optimize.pipeline" in imported  # -X importtime lists what the run imported
    assert "tensorflow" not in imported and "optimodel.optimize.compute" not in imported


def test_pruning_reaches_the_target_sparsity(digits: DigitsFiles, tmp_path: Path) -> None:
    float_only = run(digits, tmp_path / "float", optimization={"quantization": {"type": "float16"}})
    report = run(digits, tmp_path / "pruned", optimization={
        "method": "prune-quantize",
        "pruning": {"targetSparsity": 0.7, "fineTuneEpochs": 3, "learningRate": 1e-3,
                    "trainingData": f"file://{digits.root}/train.npz"}})

    assert report.metrics is not None and report.artifact is not None and float_only.artifact is not None
    assert report.method == "prune-quantize" and report.quantization == "int8"
    assert report.metrics.sparsity == pytest.approx(0.7, abs=0.02)
    assert report.metrics.drop <= 0.05
    assert report.artifact.gzip_bytes < 0.5 * float_only.artifact.gzip_bytes


def test_pruning_alone_keeps_float32_and_compresses(digits: DigitsFiles, tmp_path: Path) -> None:
    report = run(digits, tmp_path, optimization={"method": "prune", "pruning": {
        "targetSparsity": 0.8, "fineTuneEpochs": 2, "trainingData": f"file://{digits.root}/train.npz"}},
        gates={"maxSizeRatio": 1.0})

    assert report.metrics is not None and report.artifact is not None
    assert report.quantization is None and report.metrics.sparsity == pytest.approx(0.8, abs=0.02)
    assert report.artifact.gzip_bytes < 0.45 * report.artifact.size_bytes
