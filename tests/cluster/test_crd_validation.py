"""The API server refuses every bad OptimizedModel at apply time, naming the field at fault.

Each bad manifest is also refused by `parse_spec` (what `optimodel run` uses): the CRD generated
from the spec models and the models themselves agree. Server-side dry runs: nothing is stored.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from optimodel.devcluster.fixture import DevCluster
from optimodel.errors import SpecError
from optimodel.spec import parse_spec

CRD = Path(__file__).resolve().parents[2] / "crds" / "optimodel.io_optimizedmodels.yaml"

GOOD: dict[str, Any] = {
    "apiVersion": "optimodel.io/v1alpha1",
    "kind": "OptimizedModel",
    "metadata": {"name": "digits"},
    "spec": {
        "source": {"uri": "s3://models/digits/1/model.h5"},
        "optimization": {
            "method": "quantize",
            "quantization": {"type": "int8", "calibrationData": "s3://datasets/digits/calibration.npz"},
        },
        "evaluation": {"data": "s3://datasets/digits/test.npz", "metric": "accuracy"},
        "gates": {"maxSizeBytes": "12Mi", "maxSizeRatio": 0.3, "minMetric": 0.9, "maxMetricDrop": 0.01},
        "artifacts": {"uri": "s3://artifacts/digits/", "s3": {"credentialsSecret": "s3-credentials"}},
        "serving": {"replicas": 1},
    },
}


def _set(path: str, value: Any, *more: tuple[str, Any]) -> dict[str, Any]:
    """GOOD with `path` (dotted, under the manifest) set to `value`, and each (path, value) of
    `more`; None deletes it."""
    manifest = copy.deepcopy(GOOD)
    for where, what in ((path, value), *more):
        *parents, last = where.split(".")
        node = manifest
        for part in parents:
            node = node.setdefault(part, {})
        if what is None:
            del node[last]
        else:
            node[last] = what
    return manifest


CPU = {"requests": {"cpu": "500m"}}

# (manifest, text the API server's message must contain: the field it names)
BAD = {
    "source-missing": (_set("spec.source", None), "spec.source: Required value"),
    "source-uri-scheme": (_set("spec.source.uri", "http://x/model.h5"), "spec.source.uri"),
    "method-unknown": (_set("spec.optimization.method", "magic"), "spec.optimization.method: Unsupported value"),
    "quantization-type": (
        _set("spec.optimization.quantization.type", "int4"),
        "spec.optimization.quantization.type: Unsupported value",
    ),
    "int8-without-calibration": (
        _set("spec.optimization.quantization", {"type": "int8"}),
        "optimization.quantization.calibrationData is required for type int8",
    ),
    "prune-without-pruning": (
        _set("spec.optimization.method", "prune"),
        "optimization.pruning (with trainingData) is required for method prune",
    ),
    "pruning-without-training-data": (
        _set("spec.optimization.pruning", {"targetSparsity": 0.5}),
        "spec.optimization.pruning.trainingData: Required value",
    ),
    "sparsity-above-one": (
        _set("spec.optimization.pruning", {"targetSparsity": 1.5, "trainingData": "s3://d/t.npz"}),
        "spec.optimization.pruning.targetSparsity",
    ),
    "candidates-without-auto": (
        _set("spec.optimization.candidates", ["int8"]),
        "optimization.candidates is only for method auto",
    ),
    "auto-prune-candidate-without-pruning": (
        _set(
            "spec.optimization",
            {"method": "auto", "candidates": ["prune-int8"], "quantization": {"calibrationData": "s3://d/c.npz"}},
        ),
        "optimization.pruning is required for candidate prune-int8",
    ),
    "metric-unknown": (_set("spec.evaluation.metric", "f1"), "spec.evaluation.metric: Unsupported value"),
    "ratio-zero": (_set("spec.gates.maxSizeRatio", 0), "spec.gates.maxSizeRatio"),
    "ratio-above-one": (_set("spec.gates.maxSizeRatio", 1.5), "spec.gates.maxSizeRatio"),
    "size-not-a-quantity": (_set("spec.gates.maxSizeBytes", "12 MB"), "spec.gates.maxSizeBytes"),
    "max-metric-for-accuracy": (_set("spec.gates.maxMetric", 0.5), "gates.maxMetric is for error metrics"),
    "min-metric-for-mae": (_set("spec.evaluation.metric", "mae"), "gates.minMetric is for accuracy and top5"),
    "negative-drop": (_set("spec.gates.maxMetricDrop", -0.1), "spec.gates.maxMetricDrop"),
    "replicas-negative": (_set("spec.serving.replicas", -1), "spec.serving.replicas"),
    "port-privileged": (_set("spec.serving.port", 80), "spec.serving.port"),
    "deadline-too-short": (_set("spec.job.activeDeadlineSeconds", 10), "spec.job.activeDeadlineSeconds"),
    "deletion-policy": (_set("spec.artifacts.deletionPolicy", "Forever"), "spec.artifacts.deletionPolicy"),
    "evaluation-missing": (_set("spec.evaluation", None), "spec.evaluation: Required value"),
    "unknown-field": (_set("spec.gates.maxSize", 5), "spec.gates.maxSize"),
    "replicas-with-autoscaling": (
        _set("spec.serving", {"replicas": 2, "autoscaling": {"maxReplicas": 4}, "resources": CPU}),
        "spec.serving: Invalid value: serving.replicas and serving.autoscaling are mutually exclusive",
    ),
    "autoscaling-without-cpu-request": (
        _set("spec.serving", {"autoscaling": {"maxReplicas": 4}, "resources": {"requests": {"memory": "1Gi"}}}),
        "spec.serving: Invalid value: serving.resources.requests.cpu (or limits.cpu, which the request",
    ),
    "autoscaling-without-resources": (
        _set("spec.serving", {"autoscaling": {"maxReplicas": 4}}),
        "serving.resources.requests.cpu (or limits.cpu, which the request defaults to) is required",
    ),
    "autoscaling-max-below-min": (
        _set("spec.serving", {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}, "resources": CPU}),
        "spec.serving.autoscaling: Invalid value: serving.autoscaling.maxReplicas must be greater "
        "than or equal to minReplicas",
    ),
    "autoscaling-max-zero": (
        _set("spec.serving", {"autoscaling": {"maxReplicas": 0}, "resources": CPU}),
        "spec.serving.autoscaling.maxReplicas",
    ),
    "autoscaling-min-zero": (
        _set("spec.serving", {"autoscaling": {"minReplicas": 0, "maxReplicas": 2}, "resources": CPU}),
        "spec.serving.autoscaling.minReplicas",
    ),
    "autoscaling-max-missing": (
        _set("spec.serving", {"autoscaling": {"minReplicas": 2}, "resources": CPU}),
        "spec.serving.autoscaling.maxReplicas: Required value",
    ),
    "autoscaling-target-above-100": (
        _set(
            "spec.serving",
            {"autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 150}, "resources": CPU},
        ),
        "spec.serving.autoscaling.targetCPUUtilizationPercentage",
    ),
    "autoscaling-memory-target": (
        _set(
            "spec.serving",
            {"autoscaling": {"maxReplicas": 2, "targetMemoryUtilizationPercentage": 80}, "resources": CPU},
        ),
        "spec.serving.autoscaling.targetMemoryUtilizationPercentage",
    ),
    "analysis-without-shadow": (
        _set("spec.rollout", {"analysis": {"minRequests": 5}}),
        "rollout.analysis is for strategies shadow and canary",
    ),
    "rollout-strategy-unknown": (_set("spec.rollout.strategy", "blue-green"), "spec.rollout.strategy"),
    "steps-without-canary": (_set("spec.rollout", {"strategy": "shadow", "steps": [50]}), "rollout.steps is for"),
    "steps-decreasing": (
        _set("spec.rollout", {"strategy": "canary", "steps": [50, 20]}), "rollout.steps must increase"
    ),
    "steps-repeated": (_set("spec.rollout", {"strategy": "canary", "steps": [20, 20]}), "spec.rollout.steps"),
    "step-of-all-traffic": (_set("spec.rollout", {"strategy": "canary", "steps": [100]}), "spec.rollout.steps"),
    "min-seconds-not-below-max": (
        _set("spec.rollout", {"strategy": "canary", "analysis": {"minSeconds": 600}}),
        "rollout.analysis.minSeconds must be less than",
    ),
    "agreement-for-an-error-metric": (
        _set(
            "spec.evaluation.metric",
            "mae",
            ("spec.gates", {}),
            ("spec.rollout", {"strategy": "shadow", "analysis": {"minAgreement": 0.9}}),
        ),
        "rollout.analysis.minAgreement is for accuracy and top5",
    ),
    "mirror-percent-zero": (
        _set("spec.rollout", {"strategy": "shadow", "mirrorPercent": 0}), "spec.rollout.mirrorPercent"
    ),
}


@pytest.fixture(scope="module")
def crd(dev_cluster: DevCluster) -> None:
    dev_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    dev_cluster.kubectl("wait", "--for=condition=Established", "crd/optimizedmodels.optimodel.io", "--timeout=60s")


def _dry_run(cluster: DevCluster, namespace: str, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False
    )


def test_good_manifest_is_accepted_and_defaulted(dev_cluster: DevCluster, namespace: str, crd: None) -> None:
    dev_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(GOOD))
    stored = yaml.safe_load(dev_cluster.kubectl("get", "om", "digits", "-n", namespace, "-o", "yaml").stdout)
    assert stored["spec"]["serving"]["port"] == 8501
    assert stored["spec"]["optimization"]["quantization"]["calibrationSamples"] == 200
    assert parse_spec(stored["spec"]) == parse_spec(GOOD["spec"])  # API server defaults == model defaults
    explain = dev_cluster.kubectl("explain", "om.spec.gates").stdout
    assert "maxMetricDrop" in explain and "How much worse than the source" in explain


@pytest.mark.parametrize("resources", [CPU, {"limits": {"cpu": 1, "memory": "1Gi"}}])
def test_autoscaling_is_accepted_and_defaulted(
    dev_cluster: DevCluster, namespace: str, crd: None, resources: dict[str, Any]
) -> None:
    """With a CPU request (or a CPU limit, which the request defaults to) and no fixed replicas."""
    manifest = _set("spec.serving", {"autoscaling": {"maxReplicas": 4}, "resources": resources})
    proc = _dry_run(dev_cluster, namespace, manifest)
    assert proc.returncode == 0, proc.stderr
    dev_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    stored = yaml.safe_load(dev_cluster.kubectl("get", "om", "digits", "-n", namespace, "-o", "yaml").stdout)
    serving = stored["spec"]["serving"]
    assert serving["autoscaling"] == {"minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}
    assert "replicas" not in serving  # no default count beside the autoscaler
    assert parse_spec(stored["spec"]) == parse_spec(manifest["spec"])
    explain = dev_cluster.kubectl("explain", "om.spec.serving.autoscaling").stdout
    assert "targetCPUUtilizationPercentage" in explain and "not supported" in explain


def test_canary_is_accepted_and_defaulted(dev_cluster: DevCluster, namespace: str, crd: None) -> None:
    manifest = _set("spec.rollout", {"strategy": "canary", "analysis": {"minSeconds": 60}})
    dev_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    stored = yaml.safe_load(dev_cluster.kubectl("get", "om", "digits", "-n", namespace, "-o", "yaml").stdout)
    rollout = stored["spec"]["rollout"]
    assert rollout["analysis"]["maxSeconds"] == 600 and "steps" not in rollout  # steps default in the operator
    assert parse_spec(stored["spec"]).rollout.canary_steps == (25, 50)
    assert parse_spec(stored["spec"]) == parse_spec(manifest["spec"])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifest_is_refused_naming_the_field(
    dev_cluster: DevCluster, namespace: str, crd: None, case: str
) -> None:
    manifest, expected = BAD[case]
    proc = _dry_run(dev_cluster, namespace, manifest)
    assert proc.returncode != 0, f"{case} was accepted"
    assert expected in proc.stderr, proc.stderr
    with pytest.raises(SpecError):
        parse_spec(manifest["spec"])


def test_name_that_cannot_name_children_is_refused(dev_cluster: DevCluster, namespace: str, crd: None) -> None:
    proc = _dry_run(dev_cluster, namespace, _set("metadata.name", "a" * 50))
    assert proc.returncode != 0 and "metadata.name must be a DNS label" in proc.stderr, proc.stderr
