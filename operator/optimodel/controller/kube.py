"""Kubernetes API calls of the operator, through the sync `kubernetes` client. Adapter (I/O edge).

Runs in kopf's thread pool (sync handlers), never on its event loop. Children are applied with
server-side apply (idempotent: the same object twice is a no-op); Jobs are created once and never
changed, since a Job's template is immutable. The serving HorizontalPodAutoscaler is applied the same
way and deleted (only the one observed, by uid) when the spec no longer asks for it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from optimodel.controller import redact
from optimodel.errors import OptimodelError
from optimodel.reconcile import AutoscalerObservation, DeploymentObservation, JobObservation, ServiceObservation
from optimodel.reconcile.observed import START_PROBLEMS, PodWaiting
from optimodel.resources import ServedArtifact
from optimodel.resources.common import (
    ATTEMPT_ANNOTATION,
    LIVE,
    RECIPE_KEY_ANNOTATION,
    RETRY_ANNOTATION,
    TRAFFIC_LABEL,
)
from optimodel.resources.job import CONTAINER as JOB_CONTAINER
from optimodel.spec import API_GROUP, API_VERSION, PLURAL

FIELD_MANAGER = "optimodel"
# Holds a Deployment's replica count while the operator hands it over to the autoscaler (see
# `resources.build_replicas_handover`); the autoscaler's writes then take the field over.
HANDOVER_FIELD_MANAGER = "optimodel-handover-to-hpa"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
T = TypeVar("T")


class CredentialsError(OptimodelError):
    """The Secret named by spec.artifacts.s3.credentialsSecret is missing or lacks a key."""

    reason = "CredentialsMissing"


def _or_none(call: Callable[[], T]) -> T | None:
    """`call()`, or None when the object it reads or writes does not exist (404)."""
    try:
        return call()
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _server_side_apply(patch: Callable[..., Any], body: dict[str, Any], manager: str = FIELD_MANAGER) -> Any:
    """`body` applied with server-side apply through a client's `patch_namespaced_<kind>`: idempotent,
    and `force` takes over fields another manager set (the operator's children are the operator's)."""
    meta = body["metadata"]
    return patch(meta["name"], meta["namespace"], body, field_manager=manager, force=True, _content_type=APPLY)


def _condition(obj: Any, type_: str) -> Any:
    return next((c for c in (obj.status.conditions or []) if c.type == type_ and c.status == "True"), None)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _memory_limit(pod: Any, container: str) -> str:
    for spec in pod.spec.containers:
        limits = (spec.resources and spec.resources.limits) or {}
        if spec.name == container and "memory" in limits:
            return f"its memory limit of {limits['memory']}"
    return "the node's memory (no limit set)"


def _termination(message: str | None) -> dict[str, Any] | None:
    """The Job's JSON termination message; logs (FallbackToLogsOnError) become the error text."""
    if not message:
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return {"error": message.strip().splitlines()[-1][:500] if message.strip() else message}
    return parsed if isinstance(parsed, dict) else {"error": str(parsed)[:500]}


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.autoscaling = client.AutoscalingV2Api(api)

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        body: dict[str, Any] | None = _or_none(
            lambda: self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name)
        )
        return body

    def list_models(self, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every OptimizedModel in `namespaces` (all namespaces when empty)."""
        if not namespaces:
            found = self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL)
            return list(found.get("items", []))
        items: list[dict[str, Any]] = []
        for namespace in namespaces:
            found = self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL)
            items += found.get("items", [])
        return items

    def namespace_terminating(self, name: str) -> bool:
        """Whether the namespace is being deleted (or already gone): nothing can be created in it."""
        namespace = _or_none(lambda: self.core.read_namespace(name))
        return namespace is None or (namespace.status is not None and namespace.status.phase == "Terminating")

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> str | None:
        """Write status; the resource's resourceVersion after the write (None: deleted meanwhile)."""
        written: dict[str, Any] | None = _or_none(
            lambda: self.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, PLURAL, name, {"status": status}, _content_type=MERGE
            )
        )
        return str(written["metadata"]["resourceVersion"]) if written is not None else None

    def credentials(self, namespace: str, secret: str) -> tuple[str, str]:
        found = _or_none(lambda: self.core.read_namespaced_secret(secret, namespace))
        if found is None:
            raise CredentialsError(
                f"Secret {namespace}/{secret} (spec.artifacts.s3.credentialsSecret) does not exist"
            )
        data = found.data or {}
        missing = [key for key in CREDENTIAL_KEYS if key not in data]
        if missing:
            raise CredentialsError(f"Secret {namespace}/{secret} has no key {', '.join(missing)}")
        key_id, secret_key = (base64.b64decode(data[key]).decode() for key in CREDENTIAL_KEYS)
        redact.register(key_id, secret_key)
        return key_id, secret_key

    def list_jobs(self, namespace: str, owner: str, owner_uid: str) -> list[JobObservation]:
        """The optimization Jobs of one OptimizedModel (every recipe and attempt), without their pods."""
        selector = f"app.kubernetes.io/instance={owner},app.kubernetes.io/component=optimizer"
        found = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        return [
            observe_job(job)
            for job in found
            if any(ref.uid == owner_uid for ref in job.metadata.owner_references or [])
        ]

    def job_termination(self, namespace: str, job: str) -> dict[str, Any] | None:
        """The termination message of the Job's latest pod (its JSON summary, or the tail of its log)."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        pods.sort(key=lambda pod: pod.metadata.creation_timestamp, reverse=True)
        for pod in pods:
            for status in pod.status.container_statuses or []:
                terminated = status.state and status.state.terminated
                if status.name == JOB_CONTAINER and terminated and terminated.reason == "OOMKilled":
                    return {"error": f"out of memory at {_memory_limit(pod, JOB_CONTAINER)}", "reason": "OOMKilled"}
                if status.name == JOB_CONTAINER and terminated:
                    found = _termination(terminated.message)
                    if found is None and terminated.exit_code:
                        found = {"error": f"exit code {terminated.exit_code} ({terminated.reason})"}
                    return found
        return None

    def pod_waiting(self, namespace: str, selector: str) -> PodWaiting | None:
        """A container of the selected pods (newest first) that cannot start, and why."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        pods.sort(key=lambda pod: pod.metadata.creation_timestamp, reverse=True)
        for pod in pods:
            if pod.metadata.deletion_timestamp is not None:
                continue
            for status in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
                waiting = status.state and status.state.waiting
                if waiting is not None and waiting.reason in START_PROBLEMS:
                    return PodWaiting(pod.metadata.name, waiting.reason, waiting.message or "", status.image)
        return None

    def ready_pod_ips(self, namespace: str, selector: str) -> list[str]:
        """The IPs of the selected pods that are ready and not terminating (those that take traffic)."""
        ips = []
        for pod in self.core.list_namespaced_pod(namespace, label_selector=selector).items:
            ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
            if ready and pod.status.pod_ip and pod.metadata.deletion_timestamp is None:
                ips.append(pod.status.pod_ip)
        return ips

    def create_job(self, job: dict[str, Any]) -> bool:
        """True when created, False when it already existed (another reconcile or a restart got there)."""
        try:
            self.batch.create_namespaced_job(job["metadata"]["namespace"], job)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def get_deployment(self, namespace: str, name: str) -> DeploymentObservation | None:
        deployment = _or_none(lambda: self.apps.read_namespaced_deployment(name, namespace))
        return observe_deployment(deployment) if deployment is not None else None

    def apply_deployment(self, body: dict[str, Any]) -> DeploymentObservation:
        return observe_deployment(_server_side_apply(self.apps.patch_namespaced_deployment, body))

    def hand_over_replicas(self, body: dict[str, Any]) -> None:
        """Apply a Deployment's `spec.replicas` alone under the handover field manager."""
        _server_side_apply(self.apps.patch_namespaced_deployment, body, HANDOVER_FIELD_MANAGER)

    def get_autoscaler(self, namespace: str, name: str) -> AutoscalerObservation | None:
        found = _or_none(lambda: self.autoscaling.read_namespaced_horizontal_pod_autoscaler(name, namespace))
        return observe_autoscaler(found) if found is not None else None

    def apply_autoscaler(self, body: dict[str, Any]) -> AutoscalerObservation:
        return observe_autoscaler(
            _server_side_apply(self.autoscaling.patch_namespaced_horizontal_pod_autoscaler, body)
        )

    def delete_autoscaler(self, namespace: str, found: AutoscalerObservation) -> None:
        """Delete exactly the autoscaler observed: a newer one of the same name (409) is left alone."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=found.uid))
        try:
            self.autoscaling.delete_namespaced_horizontal_pod_autoscaler(found.name, namespace, body=options)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def get_service(self, namespace: str, name: str) -> ServiceObservation | None:
        found = _or_none(lambda: self.core.read_namespaced_service(name, namespace))
        return ServiceObservation(name=name, controller_uid=_controller_uid(found)) if found is not None else None

    def apply_service(self, body: dict[str, Any]) -> None:
        _server_side_apply(self.core.patch_namespaced_service, body)


def _attempt(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _controller_uid(found: Any) -> str | None:
    controller = next((ref for ref in found.metadata.owner_references or [] if ref.controller), None)
    return str(controller.uid) if controller is not None else None


def observe_job(job: Any) -> JobObservation:
    status, annotations = job.status, job.metadata.annotations or {}
    finished = next((t for t in ("Complete", "Failed") if _condition(job, t)), None)
    failed_condition = _condition(job, "Failed")
    return JobObservation(
        name=job.metadata.name,
        recipe_key=annotations.get(RECIPE_KEY_ANNOTATION),
        attempt=_attempt(annotations.get(ATTEMPT_ANNOTATION)),
        retry_token=annotations.get(RETRY_ANNOTATION),
        active=status.active or 0,
        succeeded=status.succeeded or 0,
        failed=status.failed or 0,
        finished=finished,
        condition_reason=failed_condition.reason or "" if failed_condition else "",
        condition_message=failed_condition.message or "" if failed_condition else "",
        duration_seconds=_seconds(status.start_time, status.completion_time),
    )


def _applies_replicas(entry: Any) -> bool:
    """A managedFields entry of the operator's server-side apply that owns spec.replicas."""
    fields = entry.fields_v1 if isinstance(entry.fields_v1, dict) else {}
    owned = "f:replicas" in (fields.get("f:spec") or {})
    return bool(entry.manager == FIELD_MANAGER and entry.operation == "Apply" and owned)


def observe_deployment(deployment: Any) -> DeploymentObservation:
    status = deployment.status
    progressing = next((c for c in (status.conditions or []) if c.type == "Progressing"), None)
    annotations = deployment.spec.template.metadata.annotations or {}
    return DeploymentObservation(
        name=deployment.metadata.name,
        generation=deployment.metadata.generation or 0,
        observed_generation=status.observed_generation or 0,
        replicas=deployment.spec.replicas if deployment.spec.replicas is not None else 1,
        updated_replicas=status.updated_replicas or 0,
        total_replicas=status.replicas or 0,
        ready_replicas=status.ready_replicas or 0,
        available_replicas=status.available_replicas or 0,
        served=ServedArtifact.from_annotations(annotations),
        progress_deadline_exceeded=bool(progressing and progressing.reason == "ProgressDeadlineExceeded"),
        owns_replicas=any(_applies_replicas(entry) for entry in deployment.metadata.managed_fields or []),
        controller_uid=_controller_uid(deployment),
        resource_version=deployment.metadata.resource_version or "",
        live=(deployment.spec.template.metadata.labels or {}).get(TRAFFIC_LABEL) == LIVE,
    )


def _cpu_target(metrics: list[Any] | None) -> int | None:
    for metric in metrics or []:
        resource = metric.resource if metric.type == "Resource" else None
        if resource is not None and resource.name == "cpu" and resource.target.type == "Utilization":
            return int(resource.target.average_utilization)
    return None


def observe_autoscaler(found: Any) -> AutoscalerObservation:
    return AutoscalerObservation(
        name=found.metadata.name,
        uid=found.metadata.uid or "",
        controller_uid=_controller_uid(found),
        min_replicas=found.spec.min_replicas if found.spec.min_replicas is not None else 1,
        max_replicas=found.spec.max_replicas,
        target_cpu_utilization=_cpu_target(found.spec.metrics),
    )


class DeadlineApiClient(client.ApiClient):
    """An ApiClient whose every request has a deadline unless the call sets its own.

    The generated client waits forever by default; a stuck API connection must not hold one of
    the operator's worker threads for good.
    """

    timeout_seconds: float = 30

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self.timeout_seconds
        return super().request(*args, **kwargs)


def make_api_client(kubeconfig: str | None, timeout_seconds: float = 30) -> client.ApiClient:
    """In-cluster credentials when running in a pod, otherwise the kubeconfig (KUBECONFIG or ~/.kube)."""
    from kubernetes import config

    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            api = DeadlineApiClient(configuration)
            api.timeout_seconds = timeout_seconds
            return api
        except config.ConfigException:
            pass
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api = DeadlineApiClient(configuration)
    api.timeout_seconds = timeout_seconds
    return api
