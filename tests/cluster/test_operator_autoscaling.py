"""`spec.serving.autoscaling` end to end on the local control plane: the operator never fights the HPA.

A resource served with a fixed count turns autoscaling on: a HorizontalPodAutoscaler appears, the
pods already running stay (the count is handed over, not reset to the default of 1) and the
operator's field manager stops owning `spec.replicas`. The dev cluster has no metrics API (and runs
no HPA controller), so the autoscaler's decision is played by `kubectl scale`, which writes the
scale subresource as the HPA controller does; the count survives the reconciles that follow (the
Deployment's own event, then a spec change). Removing autoscaling deletes the HPA and the operator
applies its fixed count again.

The operator runs with a resync interval longer than the test, so every reconcile here is caused by
an event. Tiny models, moto on the host address and helpers: `operator_kit`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import (
    Operator,
    apply,
    condition,
    get,
    manifest,
    running_operator,
    setup_namespace,
)
from tests.support.polling import wait_for

NAME = "scaled"
SERVING = f"{NAME}-serving"
CPU = {"requests": {"cpu": "50m"}}  # a CPU-utilization target is a percentage of the request


@pytest.fixture(scope="module")
def operator(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """No resync within the test: only events make the operator act."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(dev_cluster, log, env={"OPTIMODEL_RESYNC_SECONDS": "3600"}) as runner:
        yield runner


def model(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "om", NAME) or {})


def deployment(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    """The serving Deployment with its managedFields (kubectl hides them unless asked)."""
    proc = cluster.kubectl("get", "deployment", SERVING, "-n", namespace, "-o", "json", "--show-managed-fields")
    return dict(json.loads(proc.stdout))


def replicas_managers(body: dict[str, Any]) -> set[str]:
    """The field managers that own spec.replicas."""
    return {
        entry["manager"]
        for entry in body["metadata"].get("managedFields", [])
        if "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
    }


def reconciled(cluster: DevCluster, namespace: str, check: Any) -> dict[str, Any]:
    """The resource once a reconcile of its current generation wrote a status that passes `check`."""

    def probe() -> dict[str, Any] | None:
        body = model(cluster, namespace)
        status = body.get("status") or {}
        current = status.get("observedGeneration") == body.get("metadata", {}).get("generation")
        return body if current and check(status) else None

    return wait_for("a reconcile of the current generation", probe, timeout=120)


def ready(status: dict[str, Any], pods: int) -> bool:
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return conditions.get("Ready") == "True" and (status.get("serving") or {}).get("ready") == f"{pods}/{pods}"


def test_the_operator_hands_replicas_to_the_autoscaler_and_takes_them_back(
    dev_cluster: DevCluster,
    namespace: str,
    s3: str,
    operator: Operator,
) -> None:
    setup_namespace(dev_cluster, namespace)
    body = manifest(NAME, s3)
    body["spec"]["serving"] = {"replicas": 2, "resources": CPU}
    apply(dev_cluster, namespace, body)
    om = wait_for(
        "Ready with two pods",
        lambda: (b := model(dev_cluster, namespace)) and ready(b.get("status") or {}, 2) and b,
        timeout=240,
    )
    assert replicas_managers(deployment(dev_cluster, namespace)) == {"optimodel"}
    assert get(dev_cluster, namespace, "hpa", SERVING) is None
    assert "autoscaler" not in om["status"]["serving"]

    # Autoscaling on: an HPA on the Deployment; the two pods stay, and `optimodel` lets go of replicas.
    autoscaling = {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 60}
    body["spec"]["serving"] = {"autoscaling": autoscaling, "resources": CPU}
    apply(dev_cluster, namespace, body)
    om = reconciled(dev_cluster, namespace, lambda s: s["serving"].get("autoscaler"))
    assert om["status"]["serving"]["autoscaler"] == {"name": SERVING, **autoscaling}
    hpa = get(dev_cluster, namespace, "hpa", SERVING)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVING}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    [owner] = hpa["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("OptimizedModel", om["metadata"]["uid"], True)
    assert hpa["metadata"]["labels"]["app.kubernetes.io/instance"] == NAME
    served = deployment(dev_cluster, namespace)
    assert served["spec"]["replicas"] == 2  # not reset to the default of 1
    assert "optimodel" not in replicas_managers(served) and replicas_managers(served)

    # The autoscaler scales down (played by `kubectl scale`, through the scale subresource as the HPA
    # controller writes it). The Deployment's event makes the operator reconcile; the count stays.
    dev_cluster.kubectl("scale", "deployment", SERVING, "-n", namespace, "--replicas=1")
    om = reconciled(dev_cluster, namespace, lambda s: ready(s, 1))
    assert om["status"]["serving"]["replicas"] == 1
    # A spec change forces another reconcile: the HPA follows it, the count still stays.
    autoscaling["maxReplicas"] = 4
    apply(dev_cluster, namespace, body)
    om = reconciled(dev_cluster, namespace, lambda s: s["serving"].get("autoscaler", {}).get("maxReplicas") == 4)
    assert get(dev_cluster, namespace, "hpa", SERVING)["spec"]["maxReplicas"] == 4
    served = deployment(dev_cluster, namespace)
    assert served["spec"]["replicas"] == 1 and "optimodel" not in replicas_managers(served)
    assert condition(om, "Ready")["status"] == "True" and om["status"]["serving"]["ready"] == "1/1"

    # Autoscaling off: the HPA is deleted and the operator owns a fixed count again.
    body["spec"]["serving"] = {"replicas": 2, "resources": CPU}
    apply(dev_cluster, namespace, body)
    om = reconciled(dev_cluster, namespace, lambda s: "autoscaler" not in s["serving"] and ready(s, 2))
    assert get(dev_cluster, namespace, "hpa", SERVING) is None
    served = deployment(dev_cluster, namespace)
    assert served["spec"]["replicas"] == 2 and "optimodel" in replicas_managers(served)
    assert operator.alive()
