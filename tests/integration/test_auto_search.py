"""`method: auto`: the smallest candidate that passes every gate, every candidate reported."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from optimodel.optimize.pipeline import optimize
from optimodel.report import Candidate, Report
from tests.integration.conftest import DigitsFiles
from tests.integration.specs import digits_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def skewed_calibration(digits: DigitsFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibration inputs 50 times too large: full int8 then loses accuracy, dynamic range does not."""
    root = tmp_path_factory.mktemp("skewed")
    with np.load(digits.calibration) as calibration:
        np.savez(root / "calibration.npz", x=calibration["x"] * 50)
    return root / "calibration.npz"


def search(digits: DigitsFiles, artifacts: Path, calibration: Path, optimization: dict[str, object] | None = None,
           **changes: object) -> Report:
    auto = {"method": "auto", "quantization": {"calibrationData": f"file://{calibration}"}, **(optimization or {})}
    spec = digits_spec(digits.uri(digits.model), f"file://{digits.root}", f"file://{artifacts}",
                       optimization=auto, **changes)
    return optimize(spec, lambda fraction, message: None)


def test_int8_failing_a_tight_drop_gate_makes_the_search_pick_dynamic_range(
        digits: DigitsFiles, skewed_calibration: Path, tmp_path: Path) -> None:
    report = search(digits, tmp_path, skewed_calibration, gates={"maxMetricDrop": 0.02})

    assert [(c.name, c.passed) for c in report.candidates] == [("int8", False), ("dynamic", True)]
    int8 = report.candidates[0]
    assert [g.name for g in int8.gates if not g.passed] == ["maxMetricDrop"]
    assert report.chosen == "dynamic" and report.quantization == "dynamic" and report.passed
    assert report.artifact is not None and report.artifact.uri.endswith(f"{report.key}/model.tflite")
    assert report.artifact == report.candidates[1].artifact


def size(candidate: Candidate) -> int:
    assert candidate.artifact is not None, f"{candidate.name} was built: it has an artifact"
    return candidate.artifact.size_bytes


def smallest_passing(report: Report) -> Candidate:
    """The oracle of `search: exhaustive`, from the report alone: the smallest of the candidates that passed."""
    passing = [c for c in report.candidates if c.passed]
    assert passing, [(c.name, c.passed) for c in report.candidates]
    return min(passing, key=size)


def test_exhaustive_search_passes_over_a_smaller_candidate_that_failed(
        digits: DigitsFiles, skewed_calibration: Path, tmp_path: Path) -> None:
    """int8 is the smaller candidate but fails the drop gate: the larger one, which passed, is chosen.

    Without dynamic range: on this model it is smaller than full int8 and passes, so it would be
    chosen with or without the filter on passing candidates that this test is about.
    """
    report = search(digits, tmp_path, skewed_calibration, gates={"maxSizeRatio": 1.0, "maxMetricDrop": 0.02},
                    optimization={"search": "exhaustive", "candidates": ["int8", "float16"]})

    assert [(c.name, c.passed) for c in report.candidates] == [("int8", False), ("float16", True)]
    int8 = report.candidates[0]
    assert size(int8) < min(size(c) for c in report.candidates[1:])  # the case this test is about
    chosen = smallest_passing(report)
    assert report.chosen == chosen.name == "float16" and report.passed
    assert report.artifact is not None and chosen.artifact is not None and int8.artifact is not None
    assert report.artifact.sha256 == chosen.artifact.sha256 != int8.artifact.sha256


def test_when_every_candidate_fails_nothing_is_chosen_and_every_failure_is_reported(
        digits: DigitsFiles, skewed_calibration: Path, tmp_path: Path) -> None:
    report = search(digits, tmp_path, skewed_calibration, gates={"maxSizeRatio": 0.01, "maxMetricDrop": 0.02})

    assert [c.name for c in report.candidates] == ["int8", "dynamic", "float16"]
    assert not report.passed and report.chosen is None and report.artifact is None
    for candidate in report.candidates:
        failed = {g.name: g for g in candidate.gates if not g.passed}
        assert "maxSizeRatio" in failed and failed["maxSizeRatio"].threshold == 0.01
    assert not (tmp_path / report.key / "model.tflite").exists()
    assert (tmp_path / report.key / "report.json").exists()


def test_the_budget_stops_the_search(digits: DigitsFiles, skewed_calibration: Path, tmp_path: Path) -> None:
    """Pruning first: its fine-tune alone outlasts the one-second budget."""
    report = search(digits, tmp_path, skewed_calibration, optimization={
        "search": "exhaustive", "budgetSeconds": 1, "candidates": ["prune-int8", "dynamic", "float16"],
        "pruning": {"trainingData": f"file://{digits.train}", "fineTuneEpochs": 2}})

    tried = [c for c in report.candidates if c.error is None]
    skipped = [c for c in report.candidates if c.error is not None]
    assert [c.name for c in tried] == ["prune-int8"]
    assert [c.name for c in skipped] == ["dynamic", "float16"]
    assert all("budget of 1 s" in (c.error or "") for c in skipped)


def test_exhaustive_search_picks_the_smallest_passing_and_plots_it(
        digits: DigitsFiles, tmp_path: Path, write_manifest: object) -> None:
    manifest = write_manifest(tmp_path, optimization={"method": "auto", "search": "exhaustive"},  # type: ignore[operator]
                              gates={"maxSizeRatio": 0.6, "maxMetricDrop": 0.05})
    plot = tmp_path / "candidates.png"
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "matplotlib")}  # an empty font cache: built, and said so
    result = subprocess.run([sys.executable, "-m", "optimodel", "run", str(manifest), "--plot", str(plot),
                             "--output", "json"], capture_output=True, text=True, timeout=300, env=env)

    assert result.returncode == 0, result.stderr
    for chatter in ("absl::InitializeLog", "cuInit", "cuda drivers", "XNNPACK delegate", "fully_quantize",
                    "oneDNN custom operations", "generated new fontManager"):
        assert chatter not in result.stderr  # TensorFlow's, LiteRT's and matplotlib's start-up lines are filtered
    assert (tmp_path / "matplotlib").is_dir()  # matplotlib did start with an empty cache here
    report = Report.model_validate_json(result.stdout)
    assert [c.name for c in report.candidates] == ["int8", "dynamic", "float16"]
    smallest = smallest_passing(report)
    assert report.chosen == smallest.name and report.artifact is not None
    assert smallest.artifact is not None and report.artifact.sha256 == smallest.artifact.sha256
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def attention_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Self-attention over 1024 positions (a batch matmul and a softmax), then a Dense head that holds
    nearly all the weights: a model where the smallest candidate is the slowest.

    Measured with LiteRT 2.3 on this project's 2-core machine: full int8 runs the attention about 8x
    slower than float32 while 8-bit weights speed the Dense head up, so int8 is about 2.8x slower
    than float32 in all, dynamic range about 0.4x. The weights stay as initialised: speed does not
    depend on them, and no gate of the test below reads the metric.
    """
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.UpSampling2D(4)(inputs)
    x = keras.layers.Reshape((1024, 16))(keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x))
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, keras.layers.Attention()([x, x])]))
    x = keras.layers.Dense(1024, activation="relu")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    path = tmp_path_factory.mktemp("attention") / "model.h5"
    model.save(path, include_optimizer=False)
    return path


def float32_p50_ms(model_path: Path, x: np.ndarray, runs: int = 200) -> float:
    """The float32 TFLite model's median single-sample latency, with TensorFlow and LiteRT called
    directly (none of optimodel's code): the oracle the latency gate is set from."""
    import tensorflow as tf
    import tf_keras as keras
    from ai_edge_litert.interpreter import Interpreter

    model = keras.models.load_model(model_path, compile=False)
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert(), num_threads=1)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    timings = []
    for run in range(runs + 20):
        interpreter.set_tensor(index, x[run % len(x)][None].astype(np.float32))
        started = time.perf_counter()
        interpreter.invoke()
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings[20:]))


def test_a_latency_gate_just_under_float32_refuses_the_smaller_but_slower_int8(
        digits: DigitsFiles, attention_model: Path, tmp_path: Path) -> None:
    """The search's first candidate, full int8, is the smallest and passes the size gate, but it is
    slower than float32: a p95 gate set just under float32's median refuses it.

    Robust on a loaded machine: int8's median is about 2.8x float32's, its p95 higher still, and
    the gate sits below float32's median: a busy minute would have to make int8 three times faster
    than float32 measured a moment before. Whether the next candidate passes is left unasserted:
    its margin is smaller and p95 is what a busy machine disturbs most.
    """
    with np.load(digits.test) as test:
        threshold = 0.9 * float32_p50_ms(attention_model, test["x"])
    spec = digits_spec(digits.uri(attention_model), f"file://{digits.root}", f"file://{tmp_path}",
                       optimization={"method": "auto"}, evaluation={"latency": {"runs": 100}},
                       gates={"maxSizeRatio": 0.3, "maxMetricDrop": None, "maxLatencyP95Ms": threshold})
    report = optimize(spec, lambda fraction, message: None)

    int8 = report.candidates[0]
    assert int8.name == "int8" and int8.metrics is not None
    assert [(g.name, g.passed) for g in int8.gates] == [("maxSizeRatio", True), ("maxLatencyP95Ms", False)]
    assert int8.metrics.latency_p95_ms > threshold
    # slower than float32 as the same run measured both, not only slower than a gate
    assert int8.metrics.baseline_latency_p50_ms is not None
    assert int8.metrics.latency_p50_ms > int8.metrics.baseline_latency_p50_ms
    assert report.chosen != "int8" and [c.name for c in report.candidates][:2] == ["int8", "dynamic"]
