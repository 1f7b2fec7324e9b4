"""The committed CRD is the generated one, and its schema is structural and fully described."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimodel.crd import build_crd, render_crd
from optimodel.spec import (
    AUTOSCALING_NEEDS_CPU,
    MAX_BELOW_MIN_REPLICAS,
    REPLICAS_WITH_AUTOSCALING,
    OptimizedModelSpec,
)

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "optimodel.io_optimizedmodels.yaml"


def _root() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _walk(node[key], f"{path}[]")
    return found


def test_committed_crd_is_generated() -> None:
    regenerate = "run `optimodel crd > crds/optimodel.io_optimizedmodels.yaml`"
    assert CRD_FILE.read_text() == render_crd(), regenerate


def test_every_field_has_a_description() -> None:
    fields = [(path, node) for path, node in _walk(_root()) if path not in ("", ".metadata") and "[]" not in path]
    undescribed = [path for path, node in fields if not node.get("description")]
    assert undescribed == []


def test_schema_is_structural() -> None:
    for path, node in _walk(_root()):
        assert "$ref" not in node and "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string") is True, path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), path


def test_schema_follows_the_spec_models() -> None:
    spec = _root()["properties"]["spec"]
    assert set(spec["properties"]) == {f.alias for f in OptimizedModelSpec.model_fields.values()}
    assert spec["required"] == ["source", "evaluation", "artifacts"]
    gates = spec["properties"]["gates"]["properties"]
    assert gates["maxSizeBytes"]["x-kubernetes-int-or-string"] is True
    assert gates["maxSizeRatio"] == {
        "type": "number",
        "description": gates["maxSizeRatio"]["description"],
        "exclusiveMinimum": True,
        "maximum": 1,
        "minimum": 0,
    }
    optimization = spec["properties"]["optimization"]
    assert optimization["default"]["method"] == optimization["properties"]["method"]["default"] == "quantize"
    assert optimization["properties"]["method"]["enum"] == ["quantize", "prune", "prune-quantize", "auto"]
    assert "default" not in optimization["properties"]["pruning"]


def test_cel_rules_carry_the_messages_of_the_spec_validators() -> None:
    spec = _root()["properties"]["spec"]
    rules = spec["x-kubernetes-validations"] + spec["properties"]["optimization"]["x-kubernetes-validations"]
    texts = " ".join(rule["messageExpression"] for rule in rules)
    for message in (
        "optimization.pruning (with trainingData) is required for method",
        "optimization.quantization.calibrationData is required for type int8",
        "optimization.candidates is only for method auto",
        "optimization.pruning is required for candidate",
        "optimization.quantization.calibrationData is required for candidate",
        "gates.maxMetric is for error metrics (mae, rmse)",
        "gates.minMetric is for accuracy and top5",
    ):
        assert message in texts


def test_serving_rules_carry_the_spec_messages() -> None:
    serving = _root()["properties"]["spec"]["properties"]["serving"]
    autoscaling = serving["properties"]["autoscaling"]
    messages = [rule["message"] for rule in serving["x-kubernetes-validations"]]
    assert messages == [REPLICAS_WITH_AUTOSCALING, AUTOSCALING_NEEDS_CPU]
    assert [rule["message"] for rule in autoscaling["x-kubernetes-validations"]] == [MAX_BELOW_MIN_REPLICAS]
    # No default count: a default would be stored on every resource and refused beside autoscaling.
    assert "default" not in serving["properties"]["replicas"] and "replicas" not in serving["default"]
    assert autoscaling["required"] == ["maxReplicas"]
    target = autoscaling["properties"]["targetCPUUtilizationPercentage"]
    assert (target["minimum"], target["maximum"], target["default"]) == (1, 100, 70)


def test_names_columns_and_subresources() -> None:
    version = build_crd()["spec"]["versions"][0]
    assert build_crd()["spec"]["names"]["shortNames"] == ["om"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    default = ["Phase", "Size", "Ratio", "Metric", "Drop", "Gates", "Ready", "Age"]
    assert [n for n, p in columns.items() if p == 0] == default
    assert {"Method", "Chosen", "Tried", "Job", "Artifact"} <= {n for n, p in columns.items() if p == 1}
    status = _root()["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    for column in version["additionalPrinterColumns"]:
        parts = column["jsonPath"].strip(".").split(".")
        if parts[0] == "status":
            node = _root()["properties"]["status"]
            for part in parts[1:]:
                node = node["properties"][part]
