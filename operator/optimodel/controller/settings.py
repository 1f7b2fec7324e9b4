"""Operator settings from `OPTIMODEL_*` environment variables, read once at startup. Controller layer.

Nothing is read at import time: tests and `optimodel operator` build a `Settings` and pass it on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from optimodel import __version__
from optimodel.resources import PodDefaults


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


@dataclass(frozen=True)
class Settings:
    pods: PodDefaults
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 9090
    health_port: int = 8080
    resync_seconds: int = 60
    retry_seconds: int = 30  # the first retry of a problem that may pass; then doubling, with jitter
    retry_max_seconds: int = 600
    workers: int = 8
    kubeconfig: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

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
        )
        namespaces = tuple(n.strip() for n in env.get("OPTIMODEL_NAMESPACES", "").split(",") if n.strip())
        return cls(
            pods=pods,
            namespaces=namespaces,
            metrics_port=_int(env, "OPTIMODEL_METRICS_PORT", 9090),
            health_port=_int(env, "OPTIMODEL_HEALTH_PORT", 8080),
            resync_seconds=_int(env, "OPTIMODEL_RESYNC_SECONDS", 60),
            retry_seconds=_int(env, "OPTIMODEL_RETRY_SECONDS", 30),
            retry_max_seconds=_int(env, "OPTIMODEL_RETRY_MAX_SECONDS", 600),
            workers=_int(env, "OPTIMODEL_WORKERS", 8),
            kubeconfig=env.get("KUBECONFIG") or None,
        )
