"""Operator settings from `OPTIMODEL_*` environment variables, read once at startup. Controller layer.

Nothing is read at import time: tests and `optimodel operator` build a `Settings` and pass it on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from optimodel import __version__
from optimodel.reconcile.policy import DEFAULT_S3_ENDPOINTS, Policy, parse_endpoint
from optimodel.resources import PodDefaults
from optimodel.resources.common import JOB_RESOURCES, SERVE_RESOURCES


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list; unset means `default`, set but empty means an empty list."""
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SystemExit(f"{name}={raw!r} is not true or false")


Resources = dict[str, dict[str, int | str]]
_RESOURCE_KINDS = ("requests", "limits")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|[KMGTPE]i|[MGTPE])?$")


def _resources(env: Mapping[str, str], name: str, default: Resources) -> Resources:
    """A JSON object of container resources, `{"requests": {"cpu": "500m"}, "limits": {...}}`,
    checked now: a default every pod would get must not fail at the first Job."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise SystemExit(f"{name} is not JSON: {error}") from None
    if not isinstance(value, dict) or not set(value) <= set(_RESOURCE_KINDS):
        raise SystemExit(f'{name} must be an object with "requests" and/or "limits"')
    for kind, amounts in value.items():
        if not isinstance(amounts, dict):
            raise SystemExit(f"{name}: {kind} must map resource names to quantities")
        for resource, amount in amounts.items():
            if not isinstance(resource, str) or not _QUANTITY.match(str(amount)) or isinstance(amount, bool):
                raise SystemExit(f"{name}: {kind}.{resource} is not a quantity such as 500m, 2 or 1Gi")
    return {kind: {resource: str(amount) for resource, amount in amounts.items()} for kind, amounts in value.items()}


def _endpoints(env: Mapping[str, str]) -> tuple[str, ...]:
    """OPTIMODEL_ALLOWED_S3_ENDPOINTS, each checked now: a typo must stop the operator, not allow nothing."""
    endpoints = _list(env, "OPTIMODEL_ALLOWED_S3_ENDPOINTS", DEFAULT_S3_ENDPOINTS) or DEFAULT_S3_ENDPOINTS
    for entry in endpoints:
        try:
            parse_endpoint(entry, pattern=True)
        except ValueError as error:
            raise SystemExit(f"OPTIMODEL_ALLOWED_S3_ENDPOINTS: {error}") from None
    return endpoints


def policy_from_env(env: Mapping[str, str], pods: PodDefaults) -> Policy:
    """What tenants' specs may ask for (docs/security.md): endpoints, identity, images, ServiceAccounts."""
    return Policy(
        allowed_s3_endpoints=_endpoints(env),
        allowed_job_images=_list(env, "OPTIMODEL_ALLOWED_JOB_IMAGES") or (pods.job_image,),
        allowed_serve_images=_list(env, "OPTIMODEL_ALLOWED_SERVE_IMAGES") or (pods.serve_image,),
        allowed_service_accounts=_list(env, "OPTIMODEL_ALLOWED_SERVICE_ACCOUNTS"),
        lend_operator_identity=_bool(env, "OPTIMODEL_LEND_OPERATOR_IDENTITY"),
    )


@dataclass(frozen=True)
class Settings:
    pods: PodDefaults
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 9090
    health_port: int = 8080
    resync_seconds: int = 60
    full_resync_seconds: int = 600  # a settled resource is checked in full (S3 too) this often
    retry_seconds: int = 30  # the first retry of a problem that may pass; then doubling, with jitter
    retry_max_seconds: int = 600
    workers: int = 8
    kubeconfig: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    namespace_workers: int = 2  # reconciles one namespace may run at once (of `workers`)
    api_timeout_seconds: int = 30  # deadline of each Kubernetes API call
    lease_namespace: str | None = None  # leader election on a Lease there; None: standalone
    lease_name: str = "optimodel-operator"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        image = env.get("OPTIMODEL_IMAGE", f"ghcr.io/optimodel/optimodel:{__version__}")
        run_as = env.get("OPTIMODEL_RUN_AS_USER", "65532")
        pods = PodDefaults(
            job_image=env.get("OPTIMODEL_JOB_IMAGE", image),
            serve_image=env.get("OPTIMODEL_SERVE_IMAGE", image),
            image_pull_policy=env.get("OPTIMODEL_IMAGE_PULL_POLICY", "IfNotPresent"),
            run_as_user=None if run_as in ("", "none") else _int(env, "OPTIMODEL_RUN_AS_USER", 65532),
            job_ttl_seconds=_int(env, "OPTIMODEL_JOB_TTL_SECONDS", 86_400),
            job_resources=_resources(env, "OPTIMODEL_JOB_RESOURCES", JOB_RESOURCES),
            serve_resources=_resources(env, "OPTIMODEL_SERVE_RESOURCES", SERVE_RESOURCES),
        )
        namespaces = tuple(n.strip() for n in env.get("OPTIMODEL_NAMESPACES", "").split(",") if n.strip())
        return cls(
            pods=pods,
            namespaces=namespaces,
            metrics_port=_int(env, "OPTIMODEL_METRICS_PORT", 9090),
            health_port=_int(env, "OPTIMODEL_HEALTH_PORT", 8080),
            resync_seconds=_int(env, "OPTIMODEL_RESYNC_SECONDS", 60),
            full_resync_seconds=_int(env, "OPTIMODEL_FULL_RESYNC_SECONDS", 600),
            retry_seconds=_int(env, "OPTIMODEL_RETRY_SECONDS", 30),
            retry_max_seconds=_int(env, "OPTIMODEL_RETRY_MAX_SECONDS", 600),
            workers=_int(env, "OPTIMODEL_WORKERS", 8),
            kubeconfig=env.get("KUBECONFIG") or None,
            policy=policy_from_env(env, pods),
            namespace_workers=max(1, _int(env, "OPTIMODEL_NAMESPACE_WORKERS", 2)),
            api_timeout_seconds=max(1, _int(env, "OPTIMODEL_API_TIMEOUT_SECONDS", 30)),
            lease_namespace=env.get("OPTIMODEL_LEASE_NAMESPACE") or None,
            lease_name=env.get("OPTIMODEL_LEASE_NAME") or "optimodel-operator",
        )
