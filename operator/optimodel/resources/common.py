"""What every child object shares: names, labels, owner references, S3 credentials. Pure layer.

Children carry `app.kubernetes.io/*` labels and a controller owner reference, so `kubectl get all -l
app.kubernetes.io/instance=NAME` finds them and deleting the OptimizedModel deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from optimodel.spec import API_GROUP, API_VERSION, KIND

MANAGED_BY = "optimodel"
ANNOTATION_PREFIX = "optimodel.io/"
RECIPE_KEY_ANNOTATION = ANNOTATION_PREFIX + "recipe-key"
# Set by the user on an OptimizedModel to retry a failed Job; copied onto the Job that answers it.
RETRY_ANNOTATION = ANNOTATION_PREFIX + "retry-requested-at"
ATTEMPT_ANNOTATION = ANNOTATION_PREFIX + "attempt"
CONTENT_KEY_ANNOTATION = ANNOTATION_PREFIX + "content-key"
ARTIFACT_URI_ANNOTATION = ANNOTATION_PREFIX + "artifact-uri"
ARTIFACT_SHA256_ANNOTATION = ANNOTATION_PREFIX + "artifact-sha256"
SHORT_HASH = 10
# strategy canary: on the pods the Service `<name>-serving` sends live traffic to, both the served
# model's and the candidate's; each Deployment's selector tells its own pods apart by component.
TRAFFIC_LABEL = ANNOTATION_PREFIX + "traffic"
LIVE = "live"


@dataclass(frozen=True)
class Owner:
    """The OptimizedModel the children belong to."""

    name: str
    namespace: str
    uid: str


# Resources of the pods the operator creates, for what the spec leaves out, unless the operator's
# settings give others (OPTIMODEL_JOB_RESOURCES, OPTIMODEL_SERVE_RESOURCES): enough for the digits
# example (an optimization Job of digits-wide peaks at 1.2 GiB; a serving process with its model is
# about 100 MiB). No CPU limit: throttling would only slow the work down.
JOB_RESOURCES: Final[dict[str, dict[str, int | str]]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"memory": "3Gi"},
}
SERVE_RESOURCES: Final[dict[str, dict[str, int | str]]] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "1Gi"},
}


@dataclass(frozen=True)
class PodDefaults:
    """Operator-wide settings of the pods it creates (from `OPTIMODEL_*` at startup)."""

    job_image: str
    serve_image: str
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int | None = 65532
    job_ttl_seconds: int = 86_400
    job_resources: dict[str, dict[str, int | str]] = field(default_factory=lambda: JOB_RESOURCES)
    serve_resources: dict[str, dict[str, int | str]] = field(default_factory=lambda: SERVE_RESOURCES)


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "optimodel",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def job_name(owner: Owner, recipe_key: str, attempt: int = 1) -> str:
    """`<name>-<first hex of the recipe key>`: a new recipe gets a new Job, the same recipe the same one.

    A retry of a failed Job is the next attempt of the same recipe, `<name>-<hex>-<attempt>`, so
    `kubectl get jobs` shows it beside the Job it replaces (at most 63 characters up to attempt 999999).
    """
    base = f"{owner.name}-{recipe_key[:SHORT_HASH]}"
    return base if attempt <= 1 else f"{base}-{attempt}"


def serving_name(owner: Owner) -> str:
    """Stable, so that a new model rolls the pods of one Deployment instead of replacing it."""
    return f"{owner.name}-serving"


def shadow_name(owner: Owner) -> str:
    """The shadow candidate's Deployment and Service (spec.rollout.strategy shadow); no longer than
    the serving name, so every valid resource name fits."""
    return f"{owner.name}-shadow"


def canary_name(owner: Owner) -> str:
    """The canary candidate's Deployment and Service (spec.rollout.strategy canary)."""
    return f"{owner.name}-canary"


def metadata(
    owner: Owner, name: str, component: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def credential_env(secret: str | None) -> list[dict[str, Any]]:
    """S3 credentials by reference to the Secret: their values never pass through the operator.

    Jobs get `credentialsSecret` (they write results); serving pods `servingCredentialsSecret`
    (read-only), so a compromised or curious server cannot overwrite or delete what it serves.
    """
    if secret is None:
        return []
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]


def pod_security(defaults: PodDefaults) -> dict[str, Any]:
    context: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if defaults.run_as_user is not None:
        uid = defaults.run_as_user
        context.update(runAsUser=uid, runAsGroup=uid, fsGroup=uid)
    return context


# Writable scratch space on a read-only root filesystem; not /tmp, which may hold the image's own files.
SCRATCH = "/scratch"


def scratch_env() -> list[dict[str, str]]:
    return [{"name": "HOME", "value": SCRATCH}, {"name": "TMPDIR", "value": SCRATCH}]


def container_security() -> dict[str, Any]:
    """A fresh dict each time: builders never share mutable parts between objects."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def resources(
    value: dict[str, dict[str, int | str]] | None, defaults: dict[str, dict[str, int | str]]
) -> dict[str, dict[str, int | str]]:
    """The spec's resources, and for each resource (cpu, memory) the spec names in neither its
    requests nor its limits, the default request and limit, the way a LimitRange fills them in: a
    resource the spec names is left exactly as given, so no default can contradict it."""
    given = {kind: dict(amounts) for kind, amounts in (value or {}).items()}
    named = {name for amounts in given.values() for name in amounts}
    for kind, amounts in defaults.items():
        for name, amount in amounts.items():
            if name not in named:
                given.setdefault(kind, {})[name] = amount
    return given
