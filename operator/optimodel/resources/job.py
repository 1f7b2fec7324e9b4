"""The optimization Job: runs `optimodel job` once per recipe. Pure layer.

The contract with the engine: the spec arrives as camelCase JSON in `OPTIMODEL_SPEC`, the recipe
key in `OPTIMODEL_RECIPE_KEY`; the pod ends with a short JSON termination message and an exit code
(0 result, 2 bad input, 3 storage, 4 internal). Exit code 2 fails the Job at once through the pod
failure policy: retrying the same input cannot help, while storage errors retry with the Job
controller's backoff.
"""

from __future__ import annotations

import json
from typing import Any

from optimodel.resources.common import (
    ATTEMPT_ANNOTATION,
    RECIPE_KEY_ANNOTATION,
    RETRY_ANNOTATION,
    SCRATCH,
    Owner,
    PodDefaults,
    container_security,
    credential_env,
    job_name,
    metadata,
    pod_security,
    resources,
    scratch_env,
)
from optimodel.spec import OptimizedModelSpec

CONTAINER = "optimize"
TERMINATION_LOG = "/dev/termination-log"
BAD_INPUT_EXIT_CODE = 2


def job_image(spec: OptimizedModelSpec, defaults: PodDefaults) -> str:
    """The image is part of the recipe: another image may produce other bytes."""
    return spec.job.image or defaults.job_image


def job_wire(spec: OptimizedModelSpec) -> dict[str, Any]:
    """The spec the engine reads, without `rollout`: how a passed candidate reaches traffic is the
    operator's business, and its fields (with their defaults) would otherwise reach an optimizer
    image older than the operator (`spec.job.image` pinned) that refuses fields it does not know."""
    wire = spec.to_wire()
    wire.pop("rollout", None)
    return wire


def build_job(
    spec: OptimizedModelSpec,
    owner: Owner,
    recipe_key: str,
    defaults: PodDefaults,
    attempt: int = 1,
    retry_token: str | None = None,
) -> dict[str, Any]:
    """The Job of one recipe; a retry (`attempt` > 1) names the attempt and the request it answers."""
    name = job_name(owner, recipe_key, attempt)
    annotations = {RECIPE_KEY_ANNOTATION: recipe_key}
    if attempt > 1:
        annotations[ATTEMPT_ANNOTATION] = str(attempt)
        if retry_token is not None:
            annotations[RETRY_ANNOTATION] = retry_token
    meta = metadata(owner, name, "optimizer", annotations)
    wire = json.dumps(job_wire(spec), sort_keys=True, separators=(",", ":"))
    env = [
        {"name": "OPTIMODEL_SPEC", "value": wire},
        {"name": "OPTIMODEL_RECIPE_KEY", "value": recipe_key},
        {"name": "OPTIMODEL_TERMINATION_LOG", "value": TERMINATION_LOG},
        *scratch_env(),
        *credential_env(spec.artifacts.s3.credentials_secret),
    ]
    container = {
        "name": CONTAINER,
        "image": job_image(spec, defaults),
        "imagePullPolicy": defaults.image_pull_policy,
        "command": ["optimodel", "job"],
        "env": env,
        "resources": resources(spec.job.resources, defaults.job_resources),
        "securityContext": container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": spec.job.service_account_name is not None,
        "securityContext": pod_security(defaults),
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    if spec.job.service_account_name:
        pod_spec["serviceAccountName"] = spec.job.service_account_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": spec.job.backoff_limit,
            "activeDeadlineSeconds": spec.job.active_deadline_seconds,
            "ttlSecondsAfterFinished": defaults.job_ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [BAD_INPUT_EXIT_CODE],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod_spec},
        },
    }
