"""Builds and judges one candidate: (prune) -> convert -> evaluate in LiteRT -> gates. Optimizer layer."""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optimodel.gates import all_passed, evaluate_gates, metric_drop
from optimodel.optimize.convert import convert
from optimodel.optimize.data import Dataset
from optimodel.optimize.litert import LiteRTModel
from optimodel.optimize.loading import SourceModel
from optimodel.optimize.prune import PrunedModel, prune
from optimodel.optimize.recipes import Recipe
from optimodel.optimize.scoring import score
from optimodel.optimize.tf import tf
from optimodel.report import ArtifactInfo, Candidate, Metrics
from optimodel.spec import Metric, OptimizedModelSpec

Step = Callable[[str], None]


@dataclass(frozen=True)
class Baseline:
    metric: float
    latency_p50_ms: float
    source_bytes: int


@dataclass(frozen=True)
class Built:
    """A judged candidate and its bytes (kept only until it is published or discarded)."""

    report: Candidate
    model: bytes


class CandidateBuilder:
    """Holds what candidates share: the source, the data, and a pruned model once it exists."""

    def __init__(self, spec: OptimizedModelSpec, source: SourceModel, data: dict[str, Dataset],
                 baseline: Baseline, workdir: Path) -> None:
        self._spec = spec
        self._source = source
        self._data = data
        self._baseline = baseline
        self._workdir = workdir
        self._pruned: PrunedModel | None = None

    def _pruned_model(self, step: Step) -> PrunedModel:
        if self._pruned is None:
            settings = self._spec.optimization.pruning
            assert settings is not None, "the spec validator requires pruning for pruning recipes"
            self._pruned = prune(
                self._source.model, self._source.kind, settings, self._data["training"],
                Metric(self._spec.evaluation.metric),
                on_epoch=lambda done, total: step(f"fine-tuning epoch {done}/{total}"))
        return self._pruned

    def _convert(self, recipe: Recipe, step: Step) -> tuple[bytes, float | None]:
        quantization = self._spec.optimization.quantization
        calibration = self._data.get("calibration")
        if recipe.prune:
            pruned = self._pruned_model(step)
            step(f"converting {recipe.name}")
            converter = tf.lite.TFLiteConverter.from_keras_model(pruned.model)
            return convert(converter, recipe.quantization, calibration, quantization.calibration_samples), \
                pruned.sparsity
        step(f"converting {recipe.name}")
        converter = self._source.converter(self._workdir)
        return convert(converter, recipe.quantization, calibration, quantization.calibration_samples), None

    def build(self, recipe: Recipe, step: Step) -> Built:
        started = time.monotonic()
        model, sparsity = self._convert(recipe, step)
        step(f"evaluating {recipe.name} in LiteRT")
        evaluation = self._spec.evaluation
        runtime = LiteRTModel(model, threads=evaluation.latency.threads)
        data = self._data["evaluation"]
        assert data.y is not None
        metric = Metric(evaluation.metric)
        optimized = score(metric, runtime.predict(data.x), data.y)
        p50, p95 = runtime.latency_ms(data.x, evaluation.latency.runs, evaluation.latency.warmup_runs)
        metrics = Metrics(
            metric=str(metric), baseline=self._baseline.metric, optimized=optimized,
            drop=metric_drop(metric, self._baseline.metric, optimized),
            size_ratio=len(model) / self._baseline.source_bytes,
            latency_p50_ms=p50, latency_p95_ms=p95, baseline_latency_p50_ms=self._baseline.latency_p50_ms,
            sparsity=sparsity, evaluated_samples=len(data))
        gates = evaluate_gates(self._spec.gates, metrics, len(model))
        artifact = ArtifactInfo(uri="", size_bytes=len(model), gzip_bytes=len(gzip.compress(model, 9)),
                                sha256=hashlib.sha256(model).hexdigest())
        report = Candidate(
            name=recipe.name, method=recipe.method,
            quantization=None if recipe.quantization is None else str(recipe.quantization),
            artifact=artifact, metrics=metrics, gates=gates, passed=all_passed(gates),
            duration_seconds=round(time.monotonic() - started, 3))
        return Built(report=report, model=model)
