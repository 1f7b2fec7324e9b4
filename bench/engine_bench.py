"""Benchmark of the optimization engine on the two reference models. Prints tables; asserts nothing.

digits-wide (conv + 2x Dense(2048), examples/digits/make_digits.py) is the case 8-bit weights suit
best; mobilenet-v2 (Keras' MobileNetV2, width 0.35, 64x64x3, examples/digits/make_mobilenet.py) is
the kind of network users serve. Per model and method: bytes, ratio, gzip bytes, metric, drop,
sparsity, conversion time and wall time of the whole run; then p50/p95 at 1 and 2 threads of
float32 and of every method, measured round-robin over several rounds (medians) so that the ratio
to float32 is a same-run figure even on a shared machine; a method slower than float32 says so.
Then `method: auto` on the reference models against running each method alone. The targets of
issues 2 and 6 (digits-wide) are printed beside the figures.

    .venv/bin/python bench/engine_bench.py [--data .demo] [--skip-prune] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimodel.optimize.litert import LiteRTModel  # noqa: E402
from optimodel.optimize.pipeline import optimize  # noqa: E402
from optimodel.report import Report  # noqa: E402
from optimodel.spec import parse_spec  # noqa: E402

PRUNING = {"targetSparsity": 0.8, "fineTuneEpochs": 8, "learningRate": 1e-4}
FLOAT32 = "float32"


@dataclass(frozen=True)
class Reference:
    """A reference model and the folder (models/, data/) its examples script wrote."""

    name: str
    data: Path

    @property
    def source(self) -> Path:
        return self.data / "models" / f"{self.name}.h5"


@dataclass(frozen=True)
class Run:
    report: Report
    wall_seconds: float
    conversion_seconds: float


def spec(ref: Reference, artifacts: Path, optimization: dict[str, Any], gates: dict[str, Any]) -> Any:
    return parse_spec({
        "source": {"uri": f"file://{ref.source}"},
        "optimization": {**optimization, "quantization": {
            "calibrationData": f"file://{ref.data}/data/calibration.npz", **optimization.get("quantization", {})}},
        "evaluation": {"data": f"file://{ref.data}/data/test.npz", "latency": {"runs": 300, "warmupRuns": 30}},
        "gates": gates,
        "artifacts": {"uri": f"file://{artifacts}"},
    })


def timed(spec_: Any) -> Run:
    """The run, its wall time, and its conversion time: from the candidate's `converting ...` progress
    line to its `evaluating ... in LiteRT` one (a pruning fine-tune comes before the first)."""
    marks: dict[str, float] = {}

    def progress(fraction: float, message: str) -> None:
        if message.startswith("converting "):
            marks.setdefault("converting", time.monotonic())
        elif message.endswith(" in LiteRT"):
            marks.setdefault("evaluating", time.monotonic())

    started = time.monotonic()
    report = optimize(spec_, progress)
    return Run(report, time.monotonic() - started, marks["evaluating"] - marks["converting"])


def methods(ref: Reference, work: Path, skip_prune: bool) -> dict[str, Run]:
    recipes: dict[str, dict[str, Any]] = {
        "dynamic": {"method": "quantize", "quantization": {"type": "dynamic"}},
        "float16": {"method": "quantize", "quantization": {"type": "float16"}},
        "int8": {"method": "quantize", "quantization": {"type": "int8"}},
    }
    if not skip_prune:
        training = {**PRUNING, "trainingData": f"file://{ref.data}/data/train.npz"}
        recipes["prune 80%"] = {"method": "prune", "pruning": training}
        recipes["prune 80% + int8"] = {"method": "prune-quantize", "quantization": {"type": "int8"},
                                       "pruning": training}
    results = {}
    for name, optimization in recipes.items():
        results[name] = timed(spec(ref, work / f"{ref.name}-{name.replace(' ', '_')}", optimization, {}))
        print(f"  {ref.name}: measured {name} ({results[name].wall_seconds:.0f} s)", file=sys.stderr)
    return results


def float32_model(ref: Reference) -> tuple[bytes, float]:
    """The float32 TFLite model every method is compared with, and its conversion time."""
    from optimodel.optimize.convert import convert
    from optimodel.optimize.loading import load_source_model

    model = load_source_model(ref.source, f"file://{ref.source}")
    with tempfile.TemporaryDirectory() as work:
        started = time.monotonic()
        converted = convert(model.converter(Path(work)), None)
        return converted, time.monotonic() - started


Latencies = dict[str, tuple[float, float]]


def interleaved_latency(models: dict[str, bytes], x: np.ndarray, threads: int, rounds: int) -> Latencies:
    """p50 and p95 (medians over the rounds) per model, the models taking turns within each round, so
    that a slow minute of a shared machine weighs on every model alike."""
    runtimes = {name: LiteRTModel(model, threads=threads) for name, model in models.items()}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, runtime in runtimes.items():
            samples[name].append(runtime.latency_ms(x, 200, 20))
    return {name: (statistics.median(p50 for p50, _ in runs), statistics.median(p95 for _, p95 in runs))
            for name, runs in samples.items()}


def versus_float32(latencies: Latencies, name: str) -> str:
    ratio = latencies[name][0] / latencies[FLOAT32][0]
    return f"{ratio:.2f}x" + (" **slower**" if ratio > 1 else "")


def print_methods(ref: Reference, results: dict[str, Run], rounds: int) -> None:
    first = next(iter(results.values())).report
    assert first.metrics is not None
    float_model, float_seconds = float32_model(ref)
    models = {FLOAT32: float_model}
    for name, run in results.items():
        assert run.report.artifact is not None
        models[name] = Path(run.report.artifact.uri.removeprefix("file://")).read_bytes()
    with np.load(ref.data / "data" / "test.npz") as test:
        x = test["x"].astype(np.float32)
    latency = {threads: interleaved_latency(models, x, threads, rounds) for threads in (1, 2)}
    source_bytes = first.source.size_bytes
    print(f"\n{ref.name}: source {source_bytes:,} bytes, {first.metrics.metric} {first.metrics.baseline:.4f} on "
          f"{first.metrics.evaluated_samples} held-out samples; latencies: medians of {rounds} interleaved rounds "
          "of 200 single-sample inferences\n")
    print("| method | bytes | ratio | gzip bytes | accuracy | drop | sparsity | p50/p95, 1 thread | p50 vs float32 "
          "| p50/p95, 2 threads | p50 vs float32 | conversion | wall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows: list[tuple[str, int, int, float, str, str, float, float | None]] = [
        (FLOAT32, len(float_model), gzip_bytes(float_model), first.metrics.baseline, "-", "-", float_seconds, None)]
    for name, run in results.items():
        m, artifact = run.report.metrics, run.report.artifact
        assert m is not None and artifact is not None
        sparsity = "-" if m.sparsity is None else f"{m.sparsity:.3f}"
        rows.append((name, artifact.size_bytes, artifact.gzip_bytes, m.optimized, f"{m.drop:+.4f}", sparsity,
                     run.conversion_seconds, run.wall_seconds))
    for name, size, zipped, metric, drop, sparsity, conversion, wall in rows:
        one, two = latency[1][name], latency[2][name]
        print(f"| {name} | {size:,} | {size / source_bytes:.3f} | {zipped:,} | {metric:.4f} | {drop} | {sparsity} "
              f"| {one[0]:.3f}/{one[1]:.3f} ms | {versus_float32(latency[1], name)} "
              f"| {two[0]:.3f}/{two[1]:.3f} ms | {versus_float32(latency[2], name)} | {conversion:.1f} s "
              f"| {'-' if wall is None else f'{wall:.0f} s'} |")
    if ref.name == "digits-wide":
        print_targets(results, latency[1], gzip_bytes(float_model))


def gzip_bytes(model: bytes) -> int:
    return len(gzip.compress(model, 9))


def print_targets(results: dict[str, Run], latency: Latencies, float_gzip: int) -> None:
    int8 = results["int8"].report.metrics
    assert int8 is not None
    print("\ntargets:")
    print(f"  int8 bytes <= 26% of source: {int8.size_ratio:.1%}")
    print(f"  int8 drop <= 0.5 points: {int8.drop * 100:+.2f} points")
    print(f"  int8 p50 <= 1/8 of float32 TFLite p50: {latency['int8'][0] / latency[FLOAT32][0]:.3f}")
    if "prune 80% + int8" in results:
        pruned = results["prune 80% + int8"].report
        assert pruned.artifact is not None and pruned.metrics is not None
        print(f"  prune 80% + int8 gzip <= 10% of float32 gzip: {pruned.artifact.gzip_bytes / float_gzip:.1%}, "
              f"drop <= 1 point: {pruned.metrics.drop * 100:+.2f} points")


def search(refs: list[Reference], work: Path) -> None:
    gates = {"maxSizeRatio": 0.30, "maxMetricDrop": 0.01, "maxLatencyP95Ms": 20}
    print("\n`method: auto` (search: first, gates maxSizeRatio 0.30, maxMetricDrop 0.01, maxLatencyP95Ms 20)\n")
    print("| model | chosen | candidates tried | search time | each method alone (sum) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for ref in refs:
        run = timed(spec(ref, work / f"auto-{ref.name}", {"method": "auto"}, gates))
        alone = 0.0
        for kind in ("int8", "dynamic", "float16"):
            single = {"method": "quantize", "quantization": {"type": kind}}
            alone += timed(spec(ref, work / f"alone-{ref.name}-{kind}", single, gates)).wall_seconds
        tried = len([c for c in run.report.candidates if c.error is None])
        print(f"| {ref.name} | {run.report.chosen or 'none'} | {tried} | {run.wall_seconds:.1f} s | {alone:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / ".demo")
    parser.add_argument("--skip-prune", action="store_true", help="leave out the pruning rows (minutes per model)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds per thread count")
    args = parser.parse_args()
    examples = ROOT / "examples" / "digits"
    subprocess.run([sys.executable, str(examples / "make_digits.py"), "--out", str(args.data)], check=True)
    subprocess.run([sys.executable, str(examples / "make_mobilenet.py"), "--out", str(args.data / "mobilenet")],
                   check=True)
    wide, mobilenet = Reference("digits-wide", args.data), Reference("mobilenet-v2", args.data / "mobilenet")
    with tempfile.TemporaryDirectory(prefix="optimodel-bench-") as work:
        for ref in (wide, mobilenet):
            print_methods(ref, methods(ref, Path(work), args.skip_prune), args.rounds)
        search([wide, Reference("digits-small", args.data), mobilenet], Path(work))


if __name__ == "__main__":
    main()
