"""Gate evaluation: metrics + gates -> a verdict per gate. Pure layer: no I/O.

A failed gate is a result, not an exception (STYLE.md, 7). Gates are re-evaluated on stored
metrics, so tightening a gate needs no new optimization run.
"""

from __future__ import annotations

from optimodel.report import GateResult, Metrics
from optimodel.spec import Gates, Metric

# Floating-point noise must not flip a verdict: 0.9899 - 0.9899 can be 1e-17.
_EPSILON = 1e-9


def metric_drop(metric: Metric, baseline: float, optimized: float) -> float:
    """How much worse the optimized model is, positive when worse, for either direction of metric."""
    return baseline - optimized if metric.higher_is_better else optimized - baseline


def evaluate_gates(gates: Gates, metrics: Metrics, artifact_bytes: int) -> list[GateResult]:
    """Every gate the spec gives, in a fixed order, with threshold, actual value and verdict."""
    results: list[GateResult] = []

    def check(name: str, threshold: float | None, actual: float, upper: bool) -> None:
        if threshold is None:
            return
        passed = actual <= threshold + _EPSILON if upper else actual >= threshold - _EPSILON
        results.append(GateResult(name=name, threshold=threshold, actual=actual, passed=passed))

    check("maxSizeBytes", gates.max_size, artifact_bytes, upper=True)
    check("maxSizeRatio", gates.max_size_ratio, metrics.size_ratio, upper=True)
    check("minMetric", gates.min_metric, metrics.optimized, upper=False)
    check("maxMetric", gates.max_metric, metrics.optimized, upper=True)
    check("maxMetricDrop", gates.max_metric_drop, metrics.drop, upper=True)
    check("maxLatencyP95Ms", gates.max_latency_p95_ms, metrics.latency_p95_ms, upper=True)
    return results


def all_passed(results: list[GateResult]) -> bool:
    return all(result.passed for result in results)


def summarize_failures(results: list[GateResult]) -> str:
    """One line for a condition message or an Event: which gates failed and by how much."""
    failed = [result for result in results if not result.passed]
    if not failed:
        return "all gates passed"
    return "; ".join(
        f"{result.name}: actual {result.actual:.6g} vs threshold {result.threshold:.6g}" for result in failed
    )
