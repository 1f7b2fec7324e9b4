"""The Helm chart `charts/optimodel`: lint, rendering, least-privilege RBAC, and its copy of the CRD.

Renders with the real helm binary (`.dev/bin/helm`, built by `make k8s-bins`) and parses the output
with pyyaml. The RBAC expectations below are derived from operator/optimodel/controller (kube.py,
handlers.py) and from what kopf itself needs; a change there must change the chart and this table.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from optimodel.controller.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "optimodel"
HELM = Path(os.environ.get("OPTIMODEL_HELM", ROOT / ".dev" / "bin" / "helm"))
RELEASE, NAMESPACE = "om", "optimodel-system"
KUBE_VERSION = "1.36.0"  # a helm built from source defaults to v1.20, below the chart's kubeVersion

pytestmark = pytest.mark.skipif(
    not HELM.is_file(), reason=f"no helm binary at {HELM}: run `make k8s-bins` (hack/build-k8s.sh builds it)"
)

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)

# Everything the operator does to namespaced resources, and why (see the chart's _helpers.tpl).
NAMESPACED_RULES: set[Rule] = {
    # kopf lists/watches OptimizedModels and patches annotations and finalizers; kube.get_model reads one.
    *{("optimodel.io", "optimizedmodels", verb) for verb in ("get", "list", "watch", "patch")},
    ("optimodel.io", "optimizedmodels/status", "patch"),  # kube.write_status
    ("optimodel.io", "optimizedmodels/finalizers", "update"),  # blockOwnerDeletion on children
    # kube.list_jobs / create_job; handlers watch Jobs to re-reconcile their owner.
    *{("batch", "jobs", verb) for verb in ("get", "list", "watch", "create")},
    ("", "pods", "list"),  # kube.job_termination lists a Job's pods
    # kube.get_deployment / apply_deployment (server-side apply creates or patches); handlers watch them.
    *{("apps", "deployments", verb) for verb in ("get", "list", "watch", "create", "patch")},
    # kube.get_service (is an existing one ours?) / apply_service (server-side apply).
    *{("", "services", verb) for verb in ("get", "create", "patch")},
    # kube.get_autoscaler / apply_autoscaler (server-side apply) / delete_autoscaler (autoscaling removed).
    *{("autoscaling", "horizontalpodautoscalers", verb) for verb in ("get", "create", "patch", "delete")},
    ("", "secrets", "get"),  # kube.credentials
    ("", "events", "create"),  # kopf.event
}
# kopf's cluster-scoped observation: CRDs always, namespaces when watching a list of namespaces.
CRD_RULES: set[Rule] = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
NAMESPACE_RULES: set[Rule] = {("", "namespaces", v) for v in ("list", "watch")}
# kube.namespace_terminating (deletionPolicy Delete with the credentials Secret gone): always.
NAMESPACE_GET: set[Rule] = {("", "namespaces", "get")}
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=60, check=False)


@functools.cache
def _render(*sets: str) -> tuple[dict[str, Any], ...]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    proc = _helm(*args)
    assert proc.returncode == 0, proc.stderr
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def _of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def _one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = _of_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind}s rendered"
    return found[0]


def _rules(role: dict[str, Any]) -> set[Rule]:
    """The rules of a Role or ClusterRole, flattened; wildcards and resourceNames are refused."""
    flat: set[Rule] = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    flat.add((group, resource, verb))
    return flat


def _watch_roles(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    """Roles (or RoleBindings) for the watched namespaces: all but the leader election's."""
    return [doc for doc in _of_kind(docs, kind) if not doc["metadata"]["name"].endswith("-leader")]


def _container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    containers = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container(docs)["env"]}


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={a,b}", "metrics.serviceMonitor.enabled=true")])
def test_helm_lint_is_clean(sets: tuple[str, ...]) -> None:
    args = ["lint", str(CHART), "--strict", "--namespace", NAMESPACE]
    for value in sets:
        args += ["--set", value]
    proc = _helm(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_chart_crd_is_the_generated_crd() -> None:
    chart_crd = CHART / "crds" / "optimodel.io_optimizedmodels.yaml"
    top_level = ROOT / "crds" / "optimodel.io_optimizedmodels.yaml"
    fix = f"run `cp {top_level.relative_to(ROOT)} {chart_crd.relative_to(ROOT)}`"
    assert chart_crd.read_bytes() == top_level.read_bytes(), fix
    assert [p.name for p in (CHART / "crds").iterdir()] == [top_level.name]


def test_deployment_runs_the_operator_with_settings_from_values() -> None:
    docs = _render()
    deployment = _one(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    # Only the Lease holder acts: an upgrade may start the new pod beside the old one.
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert deployment["spec"]["strategy"] == strategy
    container = _container(docs)
    assert container["command"] == ["optimodel"]
    assert container["args"] == ["operator", "--log-format=json"]
    assert container["image"] == "ghcr.io/optimodel/optimodel-operator:0.1.0"
    assert _env(docs) == {
        "OPTIMODEL_NAMESPACES": "",
        "OPTIMODEL_LEASE_NAMESPACE": NAMESPACE,
        "OPTIMODEL_JOB_IMAGE": "ghcr.io/optimodel/optimodel-optimizer:0.1.0",
        "OPTIMODEL_SERVE_IMAGE": "ghcr.io/optimodel/optimodel-serve:0.1.0",
        "OPTIMODEL_IMAGE_PULL_POLICY": "IfNotPresent",
        "OPTIMODEL_RUN_AS_USER": "65532",
        "OPTIMODEL_JOB_TTL_SECONDS": "86400",
        "OPTIMODEL_JOB_RESOURCES": '{"limits":{"memory":"3Gi"},"requests":{"cpu":"500m","memory":"1Gi"}}',
        "OPTIMODEL_SERVE_RESOURCES": '{"limits":{"memory":"1Gi"},"requests":{"cpu":"100m","memory":"128Mi"}}',
        "OPTIMODEL_METRICS_PORT": "9090",
        "OPTIMODEL_HEALTH_PORT": "8080",
        "OPTIMODEL_RESYNC_SECONDS": "60",
        "OPTIMODEL_FULL_RESYNC_SECONDS": "600",
        "OPTIMODEL_RETRY_SECONDS": "30",
        "OPTIMODEL_WORKERS": "8",
        "OPTIMODEL_NAMESPACE_WORKERS": "2",
        "OPTIMODEL_API_TIMEOUT_SECONDS": "30",
        "OPTIMODEL_LEND_OPERATOR_IDENTITY": "false",
        "TMPDIR": "/scratch",
    }
    # The chart's default resources are the operator's own, so installing with Helm changes nothing.
    chart, builtin = Settings.from_env(_env(docs)).pods, Settings.from_env({}).pods
    assert (chart.job_resources, chart.serve_resources) == (builtin.job_resources, builtin.serve_resources)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _one(docs, "ServiceAccount")["metadata"]["name"]


def test_values_reach_the_operator() -> None:
    docs = _render(
        "image.job.tag=v2",
        "image.serve.repository=registry.example/serve",
        "image.workloadPullPolicy=Always",
        "job.runAsUser=none",
        "job.ttlSecondsAfterFinished=1000000",
        "job.defaultResources.limits.memory=6Gi",
        "serving.defaultResources.requests.cpu=1",
        "metrics.port=9100",
        "logFormat=text",
        "verbose=true",
    )
    env = _env(docs)
    assert env["OPTIMODEL_JOB_IMAGE"] == "ghcr.io/optimodel/optimodel-optimizer:v2"
    assert env["OPTIMODEL_SERVE_IMAGE"] == "registry.example/serve:0.1.0"
    assert env["OPTIMODEL_IMAGE_PULL_POLICY"] == "Always"
    assert env["OPTIMODEL_RUN_AS_USER"] == "none"
    assert env["OPTIMODEL_JOB_TTL_SECONDS"] == "1000000"  # not 1e+06
    pods = Settings.from_env(env).pods  # the JSON the chart writes is what the operator reads
    assert pods.job_resources == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "6Gi"}}
    assert pods.serve_resources == {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}
    assert env["OPTIMODEL_METRICS_PORT"] == "9100"
    assert _container(docs)["args"] == ["operator", "--log-format=text", "--verbose"]
    assert _one(docs, "Service")["spec"]["ports"][0]["port"] == 9100


def test_security_values_reach_the_operator() -> None:
    """The policy of docs/security.md: endpoints, lent identity, image and ServiceAccount allow-lists."""
    env = _env(
        _render(
            "s3.allowedEndpoints={http://minio.storage:9000,https://s3.*.amazonaws.com}",
            "s3.lendOperatorIdentity=true",
            "job.allowedImages={registry.example/opt:1,registry.example/opt:2}",
            "job.allowedServiceAccounts={trainer}",
            "serving.allowedImages={registry.example/serve:1}",
            "reconcile.namespaceWorkers=3",
        )
    )
    assert env["OPTIMODEL_ALLOWED_S3_ENDPOINTS"] == "http://minio.storage:9000,https://s3.*.amazonaws.com"
    assert env["OPTIMODEL_LEND_OPERATOR_IDENTITY"] == "true"
    assert env["OPTIMODEL_ALLOWED_JOB_IMAGES"] == "registry.example/opt:1,registry.example/opt:2"
    assert env["OPTIMODEL_ALLOWED_SERVICE_ACCOUNTS"] == "trainer"
    assert env["OPTIMODEL_ALLOWED_SERVE_IMAGES"] == "registry.example/serve:1"
    assert env["OPTIMODEL_NAMESPACE_WORKERS"] == "3"


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses() -> None:
    docs = _render()
    assert _watch_roles(docs, "Role") == [] and _watch_roles(docs, "RoleBinding") == []
    rules = _rules(_one(docs, "ClusterRole"))
    assert rules == NAMESPACED_RULES | CRD_RULES | NAMESPACE_GET
    assert ("batch", "jobs", "create") in rules
    assert ("optimodel.io", "optimizedmodels/status", "patch") in rules
    assert ("", "secrets", "get") in rules
    assert not {("", "secrets", verb) for verb in ("list", "watch", "delete", "create", "update", "patch")} & rules
    assert not {rule for rule in rules - NAMESPACE_GET if rule[1] in ("nodes", "namespaces", "clusterroles", "leases")}
    # The only deletion: the operator's own autoscaler once the spec drops autoscaling (owner references
    # delete every other child).
    dangerous = ("delete", "deletecollection", "escalate", "bind", "impersonate")
    assert {rule for rule in rules if rule[2] in dangerous} == {("autoscaling", "horizontalpodautoscalers", "delete")}
    binding = _one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == _one(docs, "ClusterRole")["metadata"]["name"]
    account = _one(docs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}]


def test_watch_namespaces_gives_roles_in_those_namespaces_only() -> None:
    docs = _render("watchNamespaces={a,b}")
    assert _env(docs)["OPTIMODEL_NAMESPACES"] == "a,b"
    roles = {role["metadata"]["namespace"]: role for role in _watch_roles(docs, "Role")}
    assert sorted(roles) == ["a", "b"]
    for role in roles.values():
        assert _rules(role) == NAMESPACED_RULES
    bindings = {binding["metadata"]["namespace"]: binding for binding in _watch_roles(docs, "RoleBinding")}
    assert sorted(bindings) == ["a", "b"]
    for namespace, binding in bindings.items():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[namespace]["metadata"]["name"],
        }
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    # What stays cluster-wide is only kopf's observation of cluster-scoped kinds.
    cluster_rules = _rules(_one(docs, "ClusterRole"))
    assert cluster_rules == CRD_RULES | NAMESPACE_RULES | NAMESPACE_GET
    assert {resource for _, resource, _ in cluster_rules} <= CLUSTER_SCOPED


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={a,b}",)])
def test_leader_election_may_use_only_its_own_lease_in_the_release_namespace(sets: tuple[str, ...]) -> None:
    docs = _render("replicas=2", *sets)
    assert _one(docs, "Deployment")["spec"]["replicas"] == 2
    assert _env(docs)["OPTIMODEL_LEASE_NAMESPACE"] == NAMESPACE
    [role] = [doc for doc in _of_kind(docs, "Role") if doc["metadata"]["name"].endswith("-leader")]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["optimodel-operator"],
         "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]  # fmt: skip
    [binding] = [doc for doc in _of_kind(docs, "RoleBinding") if doc["metadata"]["name"].endswith("-leader")]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = _one(docs, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]


def test_rbac_can_be_left_to_the_user() -> None:
    docs = _render("rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=mine")
    kinds = {doc["kind"] for doc in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    assert _one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


def test_operator_runs_non_root_read_only_without_capabilities() -> None:
    docs = _render()
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container(docs)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "scratch", "mountPath": "/scratch"} in _container(docs)["volumeMounts"]


def test_every_object_has_the_recommended_labels() -> None:
    for doc in _render("watchNamespaces={a}", "metrics.serviceMonitor.enabled=true"):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "optimodel", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_metrics_service_and_optional_service_monitor() -> None:
    docs = _render()
    assert _of_kind(docs, "ServiceMonitor") == []
    service = _one(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    selector = _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    enabled = _render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    monitor = _one(enabled, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize(
    ("value", "message"),
    [("logFormat=yaml", "logFormat"), ("job.runAsUser=root", "job.runAsUser")],
)
def test_bad_values_are_refused(value: str, message: str) -> None:
    proc = _helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--set", value)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
