"""What GitOps tools and people see of an OptimizedModel on a real control plane.

- With no operator running, a new resource reads `status: {observedGeneration: -1}` (the CRD's
  default): kstatus says InProgress, Argo CD's check Progressing, never healthy before any Job ran.
- With the operator, each state (optimizing, serving, stalled on a gate, a spec not judged yet) is
  read by Argo CD's health check in gopher-lua, and `kubectl optimodel get` draws it, with the
  user's kubeconfig and rights only; `kubectl optimodel retry` sets the retry annotation.

OPTIMODEL_CAPTURE_ARGOCD_TESTDATA=1 writes the objects into the Argo CD check's testdata/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import (
    CRD,
    Operator,
    apply,
    condition,
    get,
    jobs,
    manifest,
    setup_namespace,
)
from tests.support.argocd import CHECK, run_health
from tests.support.kstatus import kstatus
from tests.support.polling import wait_for

PLUGIN = Path(sys.executable).parent / "kubectl-optimodel"


def capture(name: str, obj: dict[str, Any]) -> None:
    """Keep a live object as Argo CD testdata, without the fields only the API server reads."""
    if not os.environ.get("OPTIMODEL_CAPTURE_ARGOCD_TESTDATA"):
        return
    obj = json.loads(json.dumps(obj))
    obj["metadata"].pop("managedFields", None)
    annotations = obj["metadata"].get("annotations") or {}
    for key in [k for k in annotations if k.startswith(("optimodel.io/last-handled", "kubectl.kubernetes.io/"))]:
        del annotations[key]
    (CHECK / "testdata" / f"{name}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))


def argo(obj: dict[str, Any]) -> dict[str, str]:
    (result,) = run_health([obj])
    return result


def plugin(cluster: DevCluster, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig)}
    return subprocess.run([str(PLUGIN), *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_new_resource_is_in_progress_before_any_operator_runs(dev_cluster: DevCluster, namespace: str) -> None:
    dev_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    dev_cluster.kubectl("wait", "--for=condition=Established", "crd/optimizedmodels.optimodel.io", "--timeout=60s")
    apply(dev_cluster, namespace, manifest("digits", "http://127.0.0.1:1"))
    om = get(dev_cluster, namespace, "om", "digits")
    assert om["status"] == {"observedGeneration": -1}
    assert kstatus(om["metadata"]["generation"], om["status"]) == "InProgress"
    assert argo(om) == {"status": "Progressing", "message": "Waiting for the operator to judge generation 1"}
    capture("new", om)
    shown = plugin(dev_cluster, "get", "digits", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert "◌ Progressing: Waiting for the operator to judge generation 1" in shown.stdout


def _when(cluster: DevCluster, namespace: str, what: str, test: Any, timeout: float = 240) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        what, lambda: (b := get(cluster, namespace, "om", "digits")) and test(b) and b, timeout=timeout
    )


VIEWER_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: optimodel-viewer}
rules:
  - {apiGroups: [optimodel.io], resources: [optimizedmodels], verbs: [get, list]}
  - {apiGroups: [batch], resources: [jobs], verbs: [list]}
  - {apiGroups: [apps], resources: [deployments, replicasets], verbs: [get, list]}
  - {apiGroups: [""], resources: [pods, events], verbs: [list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: optimodel-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: optimodel-viewer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: viewer}]
"""


def test_argo_cd_and_the_plugin_follow_a_rollout(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator
) -> None:
    setup_namespace(dev_cluster, namespace)
    apply(dev_cluster, namespace, manifest("digits", s3))

    optimizing = _when(dev_cluster, namespace, "Optimizing", lambda b: b["status"].get("phase") == "Optimizing")
    assert kstatus(optimizing["metadata"]["generation"], optimizing["status"]) == "InProgress"
    assert argo(optimizing)["status"] == "Progressing"
    assert argo(optimizing)["message"] == condition(optimizing, "Reconciling")["message"]
    capture("optimizing", optimizing)

    ready = _when(dev_cluster, namespace, "Ready", lambda b: condition(b, "Ready").get("status") == "True")
    assert argo(ready) == {"status": "Healthy", "message": condition(ready, "Ready")["message"]}
    assert kstatus(ready["metadata"]["generation"], ready["status"]) == "Current"
    capture("ready", ready)

    # The plugin, as a user who may only read: the whole story in one tree.
    dev_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=VIEWER_ROLE)
    viewer = dev_cluster.user_kubeconfig("viewer")
    sha = ready["status"]["serving"]["sha256"]
    tree = plugin(dev_cluster, "get", "digits", "-n", namespace, kubeconfig=viewer)
    assert tree.returncode == 0, tree.stderr
    print(tree.stdout)
    for text in (
        "✔ Healthy",
        "maxSizeRatio",
        jobs(dev_cluster, namespace)[0],
        "Deployment",
        "ReplicaSet",
        f"serves sha256:{sha[:12]}",
        "ready 1/1, restarts 0",
        "Available",  # the operator's latest Event; the node's own (Scheduled, Pulled, ...) come before
    ):
        assert text in tree.stdout, text
    document = json.loads(plugin(dev_cluster, "get", "digits", "-n", namespace, "-o", "json", kubeconfig=viewer).stdout)
    assert document["health"]["status"] == "Healthy" and document["serving"]["sha256"] == sha
    pods = document["tree"]["children"][-1]["children"][0]["children"]
    assert [p["status"] for p in pods] == ["Running"] and sha[:12] in pods[0]["info"]
    stranger = plugin(dev_cluster, "get", "digits", "-n", namespace, kubeconfig=dev_cluster.user_kubeconfig("stranger"))
    assert stranger.returncode == 1 and "403" in stranger.stderr, stranger.stderr

    # A gate that fails: Degraded with the Stalled message, naming the gate.
    apply(dev_cluster, namespace, manifest("digits", s3, maxSizeRatio=0.01))
    stalled = _when(dev_cluster, namespace, "Stalled", lambda b: condition(b, "Stalled").get("status") == "True", 60)
    health = argo(stalled)
    assert health == {"status": "Degraded", "message": condition(stalled, "Stalled")["message"]}
    assert "maxSizeRatio" in health["message"]
    assert kstatus(stalled["metadata"]["generation"], stalled["status"]) == "Failed"
    capture("gates-failed", stalled)

    # A spec the operator has not judged yet (it is down): Progressing, whatever the old conditions say.
    operator.stop()
    apply(dev_cluster, namespace, manifest("digits", s3, source="s3://models/digits/2/model.h5"))
    unjudged = get(dev_cluster, namespace, "om", "digits")
    assert unjudged["status"]["observedGeneration"] < unjudged["metadata"]["generation"]
    assert condition(unjudged, "Stalled")["status"] == "True"
    generation = unjudged["metadata"]["generation"]
    assert argo(unjudged) == {
        "status": "Progressing",
        "message": f"Waiting for the operator to judge generation {generation}",
    }
    assert kstatus(generation, unjudged["status"]) == "InProgress"
    capture("old-generation", unjudged)
    operator.start()
    _when(dev_cluster, namespace, "the new spec judged", lambda b: b["status"]["observedGeneration"] == generation, 60)

    # retry: sets the annotation; the operator records it (nothing failed: recorded and ignored).
    asked = plugin(dev_cluster, "retry", "digits", "-n", namespace)
    assert asked.returncode == 0, asked.stderr
    value = get(dev_cluster, namespace, "om", "digits")["metadata"]["annotations"]["optimodel.io/retry-requested-at"]
    assert value in asked.stdout
    _when(dev_cluster, namespace, "retry handled", lambda b: b["status"].get("lastHandledRetryAt") == value, 60)
    missing = plugin(dev_cluster, "retry", "nothing", "-n", namespace)
    assert missing.returncode == 1 and "not found" in missing.stderr
