"""Computes a result that is not stored yet: load, judge the baseline, search, choose, publish. Optimizer layer.

Imported by `pipeline` only when the content key has no stored result, because importing it loads
TensorFlow. Every check that can fail on user input runs before any expensive step, and nothing is
published unless complete.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from optimodel.optimize.candidate import Baseline, Built, CandidateBuilder
from optimodel.optimize.convert import convert
from optimodel.optimize.data import Dataset, check_fits, load_npz
from optimodel.optimize.inputs import Fetched, store_for
from optimodel.optimize.litert import LiteRTModel
from optimodel.optimize.loading import load_source_model
from optimodel.optimize.pipeline import Progress
from optimodel.optimize.recipes import recipes_for
from optimodel.optimize.scoring import score
from optimodel.report import Candidate, Report
from optimodel.spec import Method, Metric, OptimizedModelSpec
from optimodel.storage import join_uri

_DATA_FIELDS = {
    "evaluation": "spec.evaluation.data",
    "calibration": "spec.optimization.quantization.calibrationData",
    "training": "spec.optimization.pruning.trainingData",
}



def _load_data(fetched: Fetched, input_shape: tuple[int | None, ...], spec: OptimizedModelSpec) -> dict[str, Dataset]:
    data = {}
    for role, path in fetched.data_paths.items():
        field = _DATA_FIELDS[role]
        dataset = load_npz(path, field, needs_labels=role != "calibration")
        data[role] = check_fits(dataset, input_shape, field)
    data["evaluation"] = data["evaluation"].head(spec.evaluation.max_samples)
    return data


def _choose(spec: OptimizedModelSpec, built: list[Built]) -> Built | None:
    """Single method: its one candidate. Search: the first that passed, or the smallest when exhaustive."""
    if spec.optimization.method != Method.AUTO:
        return built[0] if built else None
    passed = [item for item in built if item.report.passed]
    if not passed:
        return None
    if spec.optimization.search == "exhaustive":
        return min(passed, key=lambda item: (len(item.model), item.report.metrics.latency_p95_ms
                                             if item.report.metrics else 0.0))
    return passed[0]


def _search(
    spec: OptimizedModelSpec, builder: CandidateBuilder, progress: Progress
) -> tuple[list[Built], list[Candidate]]:
    recipes = recipes_for(spec.optimization)
    budget = spec.optimization.budget_seconds
    started = time.monotonic()
    built: list[Built] = []
    skipped: list[Candidate] = []
    for index, recipe in enumerate(recipes):
        low, high = 0.3 + 0.6 * index / len(recipes), 0.3 + 0.6 * (index + 1) / len(recipes)
        if budget is not None and built and time.monotonic() - started > budget:
            skipped.append(Candidate(name=recipe.name, method=recipe.method,
                                     error=f"not tried: the search budget of {budget} s was spent"))
            continue
        if spec.optimization.method == Method.AUTO and spec.optimization.search == "first" \
                and any(item.report.passed for item in built):
            break
        built.append(builder.build(recipe, functools.partial(progress, low)))
        progress(high, f"{recipe.name}: {'passed' if built[-1].report.passed else 'failed'} its gates")
    return built, skipped


def compute(spec: OptimizedModelSpec, fetched: Fetched, key: str, prefix: str, tools: dict[str, str],
             work: Path, progress: Progress, started: float) -> Report:
    progress(0.05, "loading the source model")
    source = load_source_model(fetched.source_path, spec.source.uri)
    data = _load_data(fetched, source.input_shape, spec)
    evaluation = data["evaluation"]
    assert evaluation.y is not None
    progress(0.1, "evaluating the source model in TensorFlow")
    baseline_metric = score(Metric(spec.evaluation.metric), source.predict(evaluation.x), evaluation.y)
    progress(0.2, "measuring the float32 TFLite baseline latency")
    float_model = LiteRTModel(convert(source.converter(work), None), threads=spec.evaluation.latency.threads)
    baseline_p50, _ = float_model.latency_ms(evaluation.x, spec.evaluation.latency.runs,
                                             spec.evaluation.latency.warmup_runs)
    baseline = Baseline(metric=baseline_metric, latency_p50_ms=baseline_p50, source_bytes=fetched.source.size_bytes)
    builder = CandidateBuilder(spec, source, data, baseline, work)
    built, skipped = _search(spec, builder, progress)
    chosen = _choose(spec, built)
    artifact_uri = join_uri(prefix, "model.tflite")
    candidates = [item.report for item in built] + skipped
    if chosen is not None:
        chosen_report = chosen.report.model_copy(update={
            "artifact": chosen.report.artifact.model_copy(update={"uri": artifact_uri})
            if chosen.report.artifact else None})
        candidates = [chosen_report if item is chosen.report else item for item in candidates]
    report = Report(
        key=key, source=fetched.source,
        artifact=chosen_report.artifact if chosen is not None else None,
        method=str(spec.optimization.method),
        quantization=chosen.report.quantization if chosen is not None else None,
        metrics=chosen.report.metrics if chosen is not None else None,
        gates=chosen.report.gates if chosen is not None else [],
        passed=chosen is not None and chosen.report.passed,
        candidates=candidates, chosen=chosen.report.name if chosen is not None else None,
        tools=tools, duration_seconds=round(time.monotonic() - started, 3))
    progress(0.95, f"publishing {prefix}")
    files: dict[str, Path] = {}
    if chosen is not None:
        files["model.tflite"] = work / "model.tflite"
        files["model.tflite"].write_bytes(chosen.model)
    files["report.json"] = work / "report.json"
    files["report.json"].write_text(report.to_json())
    store_for(spec, spec.artifacts.uri).publish(files, prefix)
    progress(1.0, "done")
    return report
