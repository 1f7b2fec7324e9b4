"""Spec builders for the engine tests: the digits example with parts replaced."""

from __future__ import annotations

from typing import Any

from optimodel.spec import OptimizedModelSpec, parse_spec


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def digits_wire(model_uri: str, data_root: str, artifacts_uri: str, **changes: Any) -> dict[str, Any]:
    """The spec as a manifest carries it, unchecked: a bad one reaches the code that must refuse it."""
    base: dict[str, Any] = {
        "source": {"uri": model_uri},
        "optimization": {"method": "quantize", "quantization": {
            "type": "int8", "calibrationData": f"{data_root}/calibration.npz", "calibrationSamples": 100}},
        "evaluation": {"data": f"{data_root}/test.npz", "metric": "accuracy", "latency": {"runs": 30}},
        "gates": {"maxSizeRatio": 0.5, "maxMetricDrop": 0.05},
        "artifacts": {"uri": artifacts_uri},
    }
    return merge(base, changes)


def digits_spec(model_uri: str, data_root: str, artifacts_uri: str, **changes: Any) -> OptimizedModelSpec:
    return parse_spec(digits_wire(model_uri, data_root, artifacts_uri, **changes))
