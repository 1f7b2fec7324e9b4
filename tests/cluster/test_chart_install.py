"""The Helm chart installed for real on the local control plane.

`helm install` the chart with the images `make images` built (CRD, RBAC, the operator Deployment
running `optimodel operator` in the operator image on the real node), check the CRD, the
Deployment, the probes and metrics, the RBAC as the operator's ServiceAccount sees it, then `helm
uninstall`. The operator watches only a namespace of its own, so it never touches what other tests
in the same session create.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.helm_kit import CHART, HELM, Helm, image_values
from tests.cluster.operator_kit import reconciles_at
from tests.support.polling import wait_for

CRD = "customresourcedefinition/optimizedmodels.optimodel.io"

pytestmark = pytest.mark.skipif(not HELM.is_file(), reason=f"no helm binary at {HELM}: run `make k8s-bins`")


MODEL = {
    "apiVersion": "optimodel.io/v1alpha1",
    "kind": "OptimizedModel",
    "metadata": {"name": "digits"},
    "spec": {
        "source": {"uri": "s3://models/digits/1/model.h5"},
        "optimization": {"method": "quantize", "quantization": {"type": "dynamic"}},
        "evaluation": {"data": "s3://datasets/digits/test.npz", "metric": "accuracy"},
        "gates": {"minMetric": 0.9},
        "artifacts": {
            "uri": "s3://artifacts/digits/",
            "s3": {"endpoint": "http://127.0.0.1:9", "credentialsSecret": "no-such-secret"},
        },
    },
}


def get_json(cluster: DevCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError as error:
        return 0, str(error)


@pytest.fixture
def watched(dev_cluster: DevCluster) -> Iterator[str]:
    """The only namespace the installed operator watches: nobody else uses it."""
    name = f"chart-w-{uuid.uuid4().hex[:6]}"
    dev_cluster.kubectl("create", "namespace", name)
    yield name
    dev_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _diagnose(cluster: DevCluster, namespace: str, selector: str) -> str:
    """The operator pods' status and logs, for a failure message."""
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "yaml", check=False).stdout
    logs = cluster.kubectl("logs", "-n", namespace, "-l", selector, "--tail=40", check=False)
    return f"operator not Available:\n{pods[-3000:]}\n{logs.stdout[-4000:]}{logs.stderr[-1000:]}"


def can_i(cluster: DevCluster, account: str, *args: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", *args, f"--as={account}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


def test_chart_installs_a_working_operator_and_uninstalls_cleanly(
    dev_cluster: DevCluster, namespace: str, watched: str, tmp_path: Path
) -> None:
    helm = Helm(dev_cluster, tmp_path)
    release = f"om-{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-optimodel"
    helm(
        "install", release, str(CHART), "--namespace", namespace,
        "--set", f"watchNamespaces={{{watched}}}",
        "--set", "logFormat=text",
        "--set", "reconcile.resyncSeconds=5",
        "--set", "s3.allowedEndpoints={http://127.0.0.1:9}",  # the model's endpoint: past the policy
        *image_values(dev_cluster),
    )  # fmt: skip
    try:
        dev_cluster.kubectl("wait", "--for=condition=Established", CRD, "--timeout=60s")
        selector = f"app.kubernetes.io/instance={release}"
        available = dev_cluster.kubectl(
            "wait", "--for=condition=Available", f"deployment/{fullname}", "-n", namespace, "--timeout=90s", check=False
        )
        assert available.returncode == 0, _diagnose(dev_cluster, namespace, selector)
        pod = get_json(dev_cluster, "pods", "-n", namespace, "-l", selector)["items"][0]
        container = pod["spec"]["containers"][0]
        assert container["command"] == ["optimodel"] and container["args"][0] == "operator"
        env = {item["name"]: item.get("value", "") for item in container["env"]}  # "" comes back as no value
        assert env["OPTIMODEL_NAMESPACES"] == watched
        assert env["OPTIMODEL_ALLOWED_S3_ENDPOINTS"] == "http://127.0.0.1:9"

        # The probes' endpoint and the metrics answer on the pod's address.
        ip = pod["status"]["podIP"]
        assert fetch(f"http://{ip}:8080/healthz")[0] == 200
        status, metrics = fetch(f"http://{ip}:9090/metrics")
        assert status == 200 and "optimodel_reconciles" in metrics

        # RBAC as the operator's ServiceAccount sees it.
        account = f"system:serviceaccount:{namespace}:{fullname}"
        allowed = [
            ("create", "jobs", "-n", watched),
            ("watch", "deployments.apps", "-n", watched),
            ("patch", "optimizedmodels.optimodel.io", "--subresource=status", "-n", watched),
            ("get", "secrets", "-n", watched),
            ("create", "events", "-n", watched),
            ("get", "services", "-n", watched),  # is an existing serving Service the operator's own?
            ("delete", "horizontalpodautoscalers.autoscaling", "-n", watched),
            ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ("watch", "namespaces"),
            ("get", "namespaces"),  # deletionPolicy Delete with the credentials Secret gone
        ]
        denied = [
            ("create", "jobs", "-n", namespace),  # only the watched namespace
            ("create", "jobs", "-n", "default"),
            ("list", "secrets", "-n", watched),
            ("delete", "secrets", "-n", watched),
            ("delete", "jobs", "-n", watched),
            ("delete", "deployments.apps", "-n", watched),
            ("list", "horizontalpodautoscalers.autoscaling", "-n", watched),
            ("update", "optimizedmodels.optimodel.io", "-n", watched),
            ("list", "nodes"),
            ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ]
        assert [args for args in allowed if not can_i(dev_cluster, account, *args)] == []
        assert [args for args in denied if can_i(dev_cluster, account, *args)] == []

        # The operator reconciles in the watched namespace: it reads the (missing) Secret, writes status
        # through the subresource and posts an Event; each needs a permission of the chart.
        dev_cluster.kubectl("apply", "-n", watched, "-f", "-", input=json.dumps(MODEL))

        def stalled() -> dict[str, Any] | None:
            status = get_json(dev_cluster, "optimizedmodel", "digits", "-n", watched).get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            return conditions.get("Stalled") if conditions.get("Stalled", {}).get("status") == "True" else None

        condition = wait_for("status written by the operator", stalled, timeout=60)
        assert condition["reason"] == "CredentialsMissing", condition
        events = get_json(dev_cluster, "events", "-n", watched, "--field-selector", "involvedObject.name=digits")
        assert events["items"], "no Event posted"

        # Up and healthy after more than one reconcile, with every permission kopf asked for. The first
        # came from the create; the second can only be the resync timer (5 s here), as a retry of the
        # missing credentials waits reconcile.retrySeconds (30 s by default).
        wait_for("a second reconcile (the resync)", lambda: reconciles_at(f"http://{ip}:9090/metrics") >= 2, timeout=25)
        pod = get_json(dev_cluster, "pod", pod["metadata"]["name"], "-n", namespace)
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        logs = dev_cluster.kubectl("logs", pod["metadata"]["name"], "-n", namespace).stdout
        assert "forbidden" not in logs.lower() and "not enough permissions" not in logs.lower(), logs[-3000:]
    finally:
        # Deleted while the operator runs, so that no finalizer of it outlives it.
        dev_cluster.kubectl("delete", "optimizedmodel", "digits", "-n", watched, "--ignore-not-found", "--timeout=30s")
        helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout=60s")

    # Everything is gone but the CRD (Helm never deletes CRDs).
    selector = f"app.kubernetes.io/instance={release}"
    kinds = "deployment,service,serviceaccount,role,rolebinding"
    leftovers = dev_cluster.kubectl("get", kinds, "-A", "-l", selector, "-o", "name").stdout
    assert leftovers.strip() == ""
    for kind in ("clusterrole", "clusterrolebinding"):
        assert dev_cluster.kubectl("get", kind, fullname, check=False).returncode != 0
    dev_cluster.kubectl("get", CRD)
    wait_for(
        "the operator pod to go",
        lambda: not get_json(dev_cluster, "pods", "-n", namespace, "-l", selector)["items"],
        timeout=60,
    )
