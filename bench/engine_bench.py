"""Benchmark of the optimization engine on the digits reference models. Prints tables; asserts nothing.

Per method on digits-wide: bytes, ratio, gzip bytes, metric, drop, sparsity, p50/p95 at 1 and 2
threads, wall time; then `method: auto` on both reference models against running each method
alone. Targets (issue 2 and 6) are printed beside the figures.

    .venv/bin/python bench/engine_bench.py [--data .demo] [--skip-prune]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimodel.optimize.litert import LiteRTModel  # noqa: E402
from optimodel.optimize.pipeline import optimize  # noqa: E402
from optimodel.report import Report  # noqa: E402
from optimodel.spec import parse_spec  # noqa: E402

PRUNING = {"targetSparsity": 0.8, "fineTuneEpochs": 8, "learningRate": 1e-4}


def spec(data: Path, model: str, artifacts: Path, optimization: dict[str, Any], gates: dict[str, Any]) -> Any:
    return parse_spec({
        "source": {"uri": f"file://{data}/models/{model}.h5"},
        "optimization": {**optimization, "quantization": {
            "calibrationData": f"file://{data}/data/calibration.npz", **optimization.get("quantization", {})}},
        "evaluation": {"data": f"file://{data}/data/test.npz", "latency": {"runs": 300, "warmupRuns": 30}},
        "gates": gates,
        "artifacts": {"uri": f"file://{artifacts}"},
    })


def timed(spec_: Any) -> tuple[Report, float]:
    started = time.monotonic()
    report = optimize(spec_, lambda fraction, message: None)
    return report, time.monotonic() - started


def two_thread_latency(report: Report, data: Path) -> tuple[float, float]:
    import numpy as np

    assert report.artifact is not None
    model = Path(report.artifact.uri.removeprefix("file://")).read_bytes()
    with np.load(data / "data" / "test.npz") as test:
        x = test["x"].astype(np.float32)
    return LiteRTModel(model, threads=2).latency_ms(x, 300, 30)


def methods(data: Path, work: Path, skip_prune: bool) -> dict[str, tuple[Report, float]]:
    recipes: dict[str, dict[str, Any]] = {
        "dynamic": {"method": "quantize", "quantization": {"type": "dynamic"}},
        "float16": {"method": "quantize", "quantization": {"type": "float16"}},
        "int8": {"method": "quantize", "quantization": {"type": "int8"}},
    }
    if not skip_prune:
        recipes["prune 80%"] = {"method": "prune", "pruning": {**PRUNING, "trainingData": f"file://{data}/data/train.npz"}}
        recipes["prune 80% + int8"] = {"method": "prune-quantize", "quantization": {"type": "int8"},
                                       "pruning": {**PRUNING, "trainingData": f"file://{data}/data/train.npz"}}
    results = {}
    for name, optimization in recipes.items():
        results[name] = timed(spec(data, "digits-wide", work / name.replace(" ", "_"), optimization, {}))
        print(f"  measured {name} ({results[name][1]:.0f} s)", file=sys.stderr)
    return results


def print_methods(results: dict[str, tuple[Report, float]], data: Path) -> None:
    first = next(iter(results.values()))[0]
    assert first.metrics is not None
    source_bytes = first.source.size_bytes
    print(f"\ndigits-wide: source {source_bytes:,} bytes, accuracy {first.metrics.baseline:.4f}, "
          f"float32 TFLite p50 {first.metrics.baseline_latency_p50_ms:.3f} ms (1 thread)\n")
    print("| method | bytes | ratio | gzip bytes | accuracy | drop | sparsity | p50/p95 1 thread | "
          "p50/p95 2 threads | wall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (report, seconds) in results.items():
        assert report.metrics is not None and report.artifact is not None
        m = report.metrics
        p50_2, p95_2 = two_thread_latency(report, data)
        sparsity = "-" if m.sparsity is None else f"{m.sparsity:.3f}"
        print(f"| {name} | {report.artifact.size_bytes:,} | {m.size_ratio:.3f} | {report.artifact.gzip_bytes:,} | "
              f"{m.optimized:.4f} | {m.drop:+.4f} | {sparsity} | {m.latency_p50_ms:.3f}/{m.latency_p95_ms:.3f} ms | "
              f"{p50_2:.3f}/{p95_2:.3f} ms | {seconds:.0f} s |")
    int8 = results["int8"][0].metrics
    assert int8 is not None and int8.baseline_latency_p50_ms is not None
    print("\ntargets:")
    print(f"  int8 bytes <= 26% of source: {int8.size_ratio:.1%}")
    print(f"  int8 drop <= 0.5 points: {int8.drop * 100:+.2f} points")
    print(f"  int8 p50 <= 1/8 of float32 TFLite p50: {int8.latency_p50_ms / int8.baseline_latency_p50_ms:.3f}")
    if "prune 80% + int8" in results:
        pruned = results["prune 80% + int8"][0]
        assert pruned.artifact is not None and pruned.metrics is not None
        float_gzip = _float_gzip(data)
        print(f"  prune 80% + int8 gzip <= 10% of float32 gzip: {pruned.artifact.gzip_bytes / float_gzip:.1%}, "
              f"drop <= 1 point: {pruned.metrics.drop * 100:+.2f} points")


def _float_gzip(data: Path) -> int:
    import gzip

    from optimodel.optimize.convert import convert
    from optimodel.optimize.loading import load_source_model

    path = data / "models" / "digits-wide.h5"
    model = load_source_model(path, f"file://{path}")
    with tempfile.TemporaryDirectory() as work:
        return len(gzip.compress(convert(model.converter(Path(work)), None), 9))


def search(data: Path, work: Path) -> None:
    gates = {"maxSizeRatio": 0.30, "maxMetricDrop": 0.01, "maxLatencyP95Ms": 20}
    print("\n`method: auto` (search: first, gates maxSizeRatio 0.30, maxMetricDrop 0.01, maxLatencyP95Ms 20)\n")
    print("| model | chosen | candidates tried | search time | each method alone (sum) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for model in ("digits-wide", "digits-small"):
        report, seconds = timed(spec(data, model, work / f"auto-{model}", {"method": "auto"}, gates))
        alone = 0.0
        for kind in ("int8", "dynamic", "float16"):
            single = {"method": "quantize", "quantization": {"type": kind}}
            alone += timed(spec(data, model, work / f"alone-{model}-{kind}", single, gates))[1]
        tried = len([c for c in report.candidates if c.error is None])
        print(f"| {model} | {report.chosen or 'none'} | {tried} | {seconds:.1f} s | {alone:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / ".demo")
    parser.add_argument("--skip-prune", action="store_true", help="leave out the pruning rows (about 3 minutes)")
    args = parser.parse_args()
    subprocess.run([sys.executable, str(ROOT / "examples/digits/make_digits.py"), "--out", str(args.data)], check=True)
    with tempfile.TemporaryDirectory(prefix="optimodel-bench-") as work:
        print_methods(methods(args.data, Path(work), args.skip_prune), args.data)
        search(args.data, Path(work))


if __name__ == "__main__":
    main()
