"""Gate verdicts for both directions of metric, with threshold and actual value."""

from __future__ import annotations

import pytest

from optimodel.gates import all_passed, evaluate_gates, metric_drop, summarize_failures
from optimodel.report import Metrics
from optimodel.spec import Gates, Metric


def metrics(metric: str = "accuracy", baseline: float = 0.99, optimized: float = 0.98,
            ratio: float = 0.25, p95: float = 0.4) -> Metrics:
    drop = metric_drop(Metric(metric), baseline, optimized)
    return Metrics(metric=metric, baseline=baseline, optimized=optimized, drop=drop, size_ratio=ratio,
                   latency_p50_ms=p95 / 2, latency_p95_ms=p95)


def test_every_given_gate_is_reported_in_a_fixed_order() -> None:
    gates = Gates(max_size_bytes="12Mi", max_size_ratio=0.3, min_metric=0.95, max_metric_drop=0.005,
                  max_latency_p95_ms=5)
    results = evaluate_gates(gates, metrics(), artifact_bytes=8_528_488)
    assert [(r.name, r.passed) for r in results] == [
        ("maxSizeBytes", True), ("maxSizeRatio", True), ("minMetric", True), ("maxMetricDrop", False),
        ("maxLatencyP95Ms", True)]
    assert results[0].threshold == 12 * 2**20 and results[0].actual == 8_528_488
    assert results[3].actual == pytest.approx(0.01)
    assert not all_passed(results)
    assert summarize_failures(results) == "maxMetricDrop: actual 0.01 vs threshold 0.005"


def test_no_gates_pass_trivially() -> None:
    assert evaluate_gates(Gates(), metrics(), 1) == []
    assert all_passed([]) and summarize_failures([]) == "all gates passed"


@pytest.mark.parametrize(("metric", "baseline", "optimized", "drop"), [
    ("accuracy", 0.99, 0.97, 0.02), ("top5", 0.9, 0.95, -0.05), ("mae", 2.0, 2.5, 0.5), ("rmse", 3.0, 2.0, -1.0)])
def test_drop_is_positive_when_worse_in_either_direction(metric: str, baseline: float, optimized: float,
                                                         drop: float) -> None:
    assert metric_drop(Metric(metric), baseline, optimized) == pytest.approx(drop)


def test_error_metrics_use_an_upper_bound() -> None:
    results = evaluate_gates(Gates(max_metric=2.2, max_metric_drop=0.1), metrics("mae", 2.0, 2.5), 1)
    assert [(r.name, r.passed, r.actual) for r in results] == [
        ("maxMetric", False, 2.5), ("maxMetricDrop", False, pytest.approx(0.5))]


def test_equal_values_pass_despite_float_noise() -> None:
    results = evaluate_gates(Gates(max_metric_drop=0.0), metrics(baseline=0.9899, optimized=0.9899 - 1e-17), 1)
    assert all_passed(results)
