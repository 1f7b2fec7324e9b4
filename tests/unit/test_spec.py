"""The typed spec: defaults, cross-field rules, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from optimodel.errors import SpecError
from optimodel.spec import CandidateName, Method, load_manifest, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "digits"


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": {"uri": "s3://models/digits/1/model.keras"},
        "evaluation": {"data": "s3://datasets/digits/test.npz"},
        "artifacts": {"uri": "s3://artifacts/digits/"},
    }
    base.update(changes)
    return base


def test_defaults_give_a_dynamic_range_quantization() -> None:
    parsed = parse_spec(spec())
    assert parsed.optimization.method == Method.QUANTIZE
    assert parsed.optimization.quantization.type == "dynamic"
    assert parsed.evaluation.metric == "accuracy"
    assert parsed.serving.fixed_replicas == 1 and parsed.artifacts.s3.addressing_style == "path"
    assert parsed.serving.replicas is None and parsed.serving.autoscaling is None


def test_the_wire_form_round_trips_in_camel_case() -> None:
    parsed = parse_spec(spec(gates={"maxSizeBytes": "12Mi", "maxMetricDrop": 0.01}))
    wire = parsed.to_wire()
    assert wire["gates"] == {"maxSizeBytes": "12Mi", "maxMetricDrop": 0.01}
    assert parse_spec(wire) == parsed
    assert parsed.gates.max_size == 12 * 2**20


CPU = {"requests": {"cpu": "500m", "memory": "256Mi"}}


@pytest.mark.parametrize(("changes", "message"), [
    ({"source": {"uri": "http://example.com/model.h5"}}, "spec.source.uri: String should match pattern"),
    ({"optimization": {"quantization": {"type": "int8"}}}, "calibrationData is required for type int8"),
    ({"optimization": {"method": "prune"}}, "optimization.pruning (with trainingData) is required for method prune"),
    ({"optimization": {"method": "prune", "pruning": {"targetSparsity": 1.0, "trainingData": "s3://data/t.npz"}}},
     "spec.optimization.pruning.targetSparsity: Input should be less than 1"),
    ({"optimization": {"method": "quantize", "candidates": ["int8"]}},
     "optimization.candidates is only for method auto"),
    ({"optimization": {"method": "shrink"}}, "spec.optimization.method: Input should be"),
    ({"gates": {"maxSizeBytes": "12 parsecs"}}, "spec.gates.maxSizeBytes"),
    ({"gates": {"maxSizeRatio": 1.5}}, "spec.gates.maxSizeRatio: Input should be less than or equal to 1"),
    ({"gates": {"maxMetric": 0.1}}, "gates.maxMetric is for error metrics (mae, rmse)"),
    ({"evaluation": {"data": "s3://data/t.npz", "metric": "rmse"}, "gates": {"minMetric": 0.9}},
     "gates.minMetric is for accuracy and top5"),
    ({"serving": {"replicas": -1}}, "spec.serving.replicas: Input should be greater than or equal to 0"),
    ({"gates": {"maxLatencyMs": 3}}, "spec.gates.maxLatencyMs: Extra inputs are not permitted"),
    ({"serving": {"replicas": 2, "autoscaling": {"maxReplicas": 4}, "resources": CPU}},
     "spec.serving: serving.replicas and serving.autoscaling are mutually exclusive"),
    ({"serving": {"autoscaling": {"maxReplicas": 4}}},
     "spec.serving: serving.resources.requests.cpu (or limits.cpu, which the request defaults to) is required"),
    ({"serving": {"autoscaling": {"maxReplicas": 4}, "resources": {"requests": {"memory": "1Gi"}}}},
     "serving.resources.requests.cpu"),
    ({"serving": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}, "resources": CPU}},
     "spec.serving.autoscaling: serving.autoscaling.maxReplicas must be greater than or equal to minReplicas"),
    ({"serving": {"autoscaling": {"minReplicas": 0, "maxReplicas": 2}, "resources": CPU}},
     "spec.serving.autoscaling.minReplicas: Input should be greater than or equal to 1"),
    ({"serving": {"autoscaling": {"minReplicas": 2}, "resources": CPU}},
     "spec.serving.autoscaling.maxReplicas: Field required"),
    ({"serving": {"autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 150}, "resources": CPU}},
     "spec.serving.autoscaling.targetCPUUtilizationPercentage: Input should be less than or equal to 100"),
    ({"serving": {"autoscaling": {"maxReplicas": 2, "targetMemoryUtilizationPercentage": 80}, "resources": CPU}},
     "spec.serving.autoscaling.targetMemoryUtilizationPercentage: Extra inputs are not permitted"),
])
def test_bad_specs_are_refused_with_the_field_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(spec(**changes))
    assert message in str(raised.value)


def test_auto_candidates_default_to_smallest_first() -> None:
    parsed = parse_spec(spec(optimization={
        "method": "auto",
        "quantization": {"calibrationData": "s3://data/c.npz"},
        "pruning": {"trainingData": "s3://data/t.npz"}}))
    assert parsed.optimization.auto_candidates() == [
        CandidateName.PRUNE_INT8, CandidateName.INT8, CandidateName.DYNAMIC, CandidateName.FLOAT16]


def test_auto_without_calibration_data_skips_int8() -> None:
    parsed = parse_spec(spec(optimization={"method": "auto"}))
    assert parsed.optimization.auto_candidates() == [CandidateName.DYNAMIC, CandidateName.FLOAT16]


def test_pruning_ramps_over_two_thirds_of_the_fine_tune() -> None:
    parsed = parse_spec(spec(optimization={"method": "prune", "pruning": {"trainingData": "s3://data/t.npz"}}))
    assert parsed.optimization.pruning is not None
    assert parsed.optimization.pruning.fine_tune_epochs == 8 and parsed.optimization.pruning.ramp_epochs == 6


@pytest.mark.parametrize(("path", "name"), [
    ("digits/local.yaml", "digits"), ("digits/optimizedmodel.yaml", "digits"), ("digits/mobilenet.yaml", "mobilenet"),
    ("gitops/base/optimizedmodel.yaml", "digits")])
def test_the_examples_parse(path: str, name: str) -> None:
    manifest = load_manifest(EXAMPLES.parent / path)
    assert manifest.metadata.name == name


def test_a_manifest_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "om.yaml"
    path.write_text("kind: OptimizedModel\nmetadata: {name: x}\n")
    with pytest.raises(SpecError, match="om.yaml has no spec"):
        load_manifest(path)


@pytest.mark.parametrize("resources", [CPU, {"limits": {"cpu": 1}}])
def test_autoscaling_replaces_the_fixed_replica_count(resources: dict[str, Any]) -> None:
    parsed = parse_spec(spec(serving={"autoscaling": {"maxReplicas": 5}, "resources": resources}))
    autoscaling = parsed.serving.autoscaling
    assert autoscaling is not None and parsed.serving.fixed_replicas is None
    assert (autoscaling.min_replicas, autoscaling.max_replicas, autoscaling.target_cpu_utilization_percentage) == (
        1, 5, 70)
    assert parsed.to_wire()["serving"]["autoscaling"] == {
        "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}
    assert parse_spec(parsed.to_wire()) == parsed


def test_replicas_without_autoscaling_are_the_fixed_count() -> None:
    assert parse_spec(spec(serving={"replicas": 0})).serving.fixed_replicas == 0
    assert parse_spec(spec(serving={"replicas": 3})).serving.fixed_replicas == 3
