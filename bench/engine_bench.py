"""Benchmark of the optimization engine on the two reference models. Asserts nothing.

digits-wide (conv + 2x Dense(2048), examples/digits/make_digits.py) is the case 8-bit weights suit
best; mobilenet-v2 (Keras' MobileNetV2, width 0.35, 64x64x3, examples/digits/make_mobilenet.py) is
the kind of network users serve. Per model and method: bytes, ratio, gzip bytes, metric, drop,
sparsity, conversion time and wall time of the whole run; then p50/p95 at 1 and 2 threads of
float32 and of every method, measured round-robin over several rounds (medians) so that the ratio
to float32 is a same-run figure even on a shared machine; a method slower than float32 says so.
Then `method: auto` on the reference models against running each method alone. Prints each model's
table; `--json` writes the figures for bench/results.py, which draws them and checks the targets.

    .venv/bin/python bench/engine_bench.py [--data .demo] [--models ...] [--skip-prune] [--skip-search]
        [--rounds 5] [--json bench/results/engine.json]
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

from bench.record import recording  # noqa: E402
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


Latencies = dict[str, list[tuple[float, float]]]


def interleaved_latency(models: dict[str, bytes], x: np.ndarray, threads: int, rounds: int) -> Latencies:
    """p50 and p95 of every round per model, the models taking turns within each round, so that a
    slow minute of a shared machine weighs on every model alike."""
    runtimes = {name: LiteRTModel(model, threads=threads) for name, model in models.items()}
    samples: Latencies = {name: [] for name in models}
    for _ in range(rounds):
        for name, runtime in runtimes.items():
            samples[name].append(runtime.latency_ms(x, 200, 20))
    return samples


def model_figures(ref: Reference, results: dict[str, Run], rounds: int) -> dict[str, Any]:
    """Every method's figures on one model, float32 TFLite first, as bench/results.py reads them."""
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

    def latencies(name: str) -> dict[str, dict[str, Any]]:
        """Medians over the rounds, and every round's p50 (the spread)."""
        return {str(t): {"p50": statistics.median(p50 for p50, _ in latency[t][name]),
                         "p95": statistics.median(p95 for _, p95 in latency[t][name]),
                         "p50Rounds": [p50 for p50, _ in latency[t][name]]} for t in (1, 2)}

    rows = [{"method": FLOAT32, "bytes": len(float_model), "gzipBytes": gzip_bytes(float_model),
             "metric": first.metrics.baseline, "drop": None, "sparsity": None, "latencyMs": latencies(FLOAT32),
             "conversionSeconds": float_seconds, "wallSeconds": None}]
    for name, run in results.items():
        m, artifact = run.report.metrics, run.report.artifact
        assert m is not None and artifact is not None
        rows.append({"method": name, "bytes": artifact.size_bytes, "gzipBytes": artifact.gzip_bytes,
                     "metric": m.optimized, "drop": m.drop, "sparsity": m.sparsity, "latencyMs": latencies(name),
                     "conversionSeconds": run.conversion_seconds, "wallSeconds": run.wall_seconds})
    return {"model": ref.name, "sourceBytes": first.source.size_bytes, "metric": first.metrics.metric,
            "samples": first.metrics.evaluated_samples, "rounds": rounds, "methods": rows}


def print_model(figures: dict[str, Any]) -> None:
    rows = figures["methods"]
    source_bytes, float32 = figures["sourceBytes"], rows[0]
    print(f"\n{figures['model']}: source {source_bytes:,} bytes, {figures['metric']} {float32['metric']:.4f} on "
          f"{figures['samples']} held-out samples; latencies: medians of {figures['rounds']} interleaved rounds "
          "of 200 single-sample inferences\n")
    print("| method | bytes | ratio | gzip bytes | accuracy | drop | sparsity | p50/p95, 1 thread | p50 vs float32 "
          "| p50/p95, 2 threads | p50 vs float32 | conversion | wall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        one, two = row["latencyMs"]["1"], row["latencyMs"]["2"]
        drop = "-" if row["drop"] is None else f"{row['drop']:+.4f}"
        sparsity = "-" if row["sparsity"] is None else f"{row['sparsity']:.3f}"
        wall = "-" if row["wallSeconds"] is None else f"{row['wallSeconds']:.0f} s"
        print(f"| {row['method']} | {row['bytes']:,} | {row['bytes'] / source_bytes:.3f} | {row['gzipBytes']:,} "
              f"| {row['metric']:.4f} | {drop} | {sparsity} | {one['p50']:.3f}/{one['p95']:.3f} ms "
              f"| {one['p50'] / float32['latencyMs']['1']['p50']:.2f}x | {two['p50']:.3f}/{two['p95']:.3f} ms "
              f"| {two['p50'] / float32['latencyMs']['2']['p50']:.2f}x | {row['conversionSeconds']:.1f} s | {wall} |")


def gzip_bytes(model: bytes) -> int:
    return len(gzip.compress(model, 9))


SEARCH_GATES = {"maxSizeRatio": 0.30, "maxMetricDrop": 0.01, "maxLatencyP95Ms": 20}


def search(refs: list[Reference], work: Path) -> list[dict[str, Any]]:
    """`method: auto` on each model, against the sum of running int8, dynamic and float16 alone."""
    rows = []
    for ref in refs:
        run = timed(spec(ref, work / f"auto-{ref.name}", {"method": "auto"}, SEARCH_GATES))
        alone = 0.0
        for kind in ("int8", "dynamic", "float16"):
            single = {"method": "quantize", "quantization": {"type": kind}}
            alone += timed(spec(ref, work / f"alone-{ref.name}-{kind}", single, SEARCH_GATES)).wall_seconds
        tried = len([c for c in run.report.candidates if c.error is None])
        rows.append({"model": ref.name, "chosen": run.report.chosen, "tried": tried,
                     "searchSeconds": run.wall_seconds, "aloneSeconds": alone})
        print(f"  auto on {ref.name}: {rows[-1]}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / ".demo")
    parser.add_argument("--models", nargs="+", default=["digits-wide", "mobilenet-v2"],
                        choices=["digits-wide", "mobilenet-v2"])
    parser.add_argument("--skip-prune", action="store_true", help="leave out the pruning rows (minutes per model)")
    parser.add_argument("--skip-search", action="store_true", help="leave out `method: auto` against each alone")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds per thread count")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/results.py")
    args = parser.parse_args()
    examples = ROOT / "examples" / "digits"
    subprocess.run([sys.executable, str(examples / "make_digits.py"), "--out", str(args.data)], check=True)
    refs = {"digits-wide": Reference("digits-wide", args.data)}
    if "mobilenet-v2" in args.models:
        subprocess.run([sys.executable, str(examples / "make_mobilenet.py"), "--out", str(args.data / "mobilenet")],
                       check=True)
        refs["mobilenet-v2"] = Reference("mobilenet-v2", args.data / "mobilenet")
    settings = {"models": args.models, "pruning": None if args.skip_prune else PRUNING, "rounds": args.rounds,
                "searchGates": None if args.skip_search else SEARCH_GATES}
    with recording(args.json, "engine", settings) as figures, \
            tempfile.TemporaryDirectory(prefix="optimodel-bench-") as work:
        figures["models"] = []
        for name in args.models:
            ref = refs[name]
            figures["models"].append(model_figures(ref, methods(ref, Path(work), args.skip_prune), args.rounds))
            print_model(figures["models"][-1])
        if not args.skip_search:
            searched = [refs["digits-wide"], Reference("digits-small", args.data)]
            figures["search"] = search(searched + [refs[n] for n in args.models if n != "digits-wide"], Path(work))


if __name__ == "__main__":
    main()
