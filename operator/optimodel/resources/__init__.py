"""Pure builders of the children of an OptimizedModel: the Job, the Deployment, the Service, the autoscaler.

Pure layer: spec in, dicts out, deterministic (no clock, no randomness), so they are tested with
golden objects and re-applied idempotently. May import `optimodel.spec` and the stdlib only.
"""

from optimodel.resources.autoscaler import build_autoscaler
from optimodel.resources.common import RETRY_ANNOTATION, Owner, PodDefaults, job_name, serving_name, shadow_name
from optimodel.resources.job import build_job, job_image
from optimodel.resources.serving import (
    SERVING,
    SHADOW,
    ServedArtifact,
    build_deployment,
    build_replicas_handover,
    build_service,
    build_shadow_deployment,
    serve_args,
    serving_url,
    shadow_replicas,
)

__all__ = [
    "RETRY_ANNOTATION",
    "SERVING",
    "SHADOW",
    "Owner",
    "PodDefaults",
    "ServedArtifact",
    "build_autoscaler",
    "build_deployment",
    "build_job",
    "build_replicas_handover",
    "build_service",
    "build_shadow_deployment",
    "job_image",
    "job_name",
    "serve_args",
    "serving_name",
    "serving_url",
    "shadow_name",
    "shadow_replicas",
]
