"""Pure builders of the children of an OptimizedModel: the Job, the Deployment, the Service, the autoscaler.

Pure layer: spec in, dicts out, deterministic (no clock, no randomness), so they are tested with
golden objects and re-applied idempotently. May import `optimodel.spec` and the stdlib only.
"""

from optimodel.resources.autoscaler import build_autoscaler
from optimodel.resources.common import (
    RETRY_ANNOTATION,
    TRAFFIC_LABEL,
    Owner,
    PodDefaults,
    canary_name,
    job_name,
    serving_name,
    shadow_name,
)
from optimodel.resources.job import build_job, job_image
from optimodel.resources.serving import (
    CANARY,
    SERVING,
    SHADOW,
    ServedArtifact,
    build_candidate_deployment,
    build_deployment,
    build_replicas_handover,
    build_service,
    canary_replicas,
    candidate_component,
    child_name,
    serve_args,
    serving_url,
    shadow_replicas,
)

__all__ = [
    "CANARY",
    "RETRY_ANNOTATION",
    "SERVING",
    "SHADOW",
    "TRAFFIC_LABEL",
    "Owner",
    "PodDefaults",
    "ServedArtifact",
    "build_autoscaler",
    "build_candidate_deployment",
    "build_deployment",
    "build_job",
    "build_replicas_handover",
    "build_service",
    "canary_name",
    "canary_replicas",
    "candidate_component",
    "child_name",
    "job_image",
    "job_name",
    "serve_args",
    "serving_name",
    "serving_url",
    "shadow_name",
    "shadow_replicas",
]
