"""One reconcile: observe -> desired children -> apply -> status + Events. Controller layer.

The decisions are the pure functions of `optimodel.reconcile`; this module only gathers what they
need (Kubernetes objects, the source version, stored results) and carries out what they return.
Reconciles of one object are serialized by a lock: kopf's handlers, its timer and the Job and
Deployment watchers may all ask for the same object at once, and each one reads the object fresh
and writes its status through the status subresource before the next one starts. How many
reconciles of one namespace run at once is the handlers' business (`controller.fairness`).

A resource that a reconcile left Ready is *settled*: the next reconciles (the resync timer, mostly)
read only the resource and its Deployment, and when neither has changed since (same
resourceVersions: no spec, annotation or status edit, no rollout, no pod gone) they stop there, with
no write and no S3 request. What they do not see (a new upload under the same source URI, a Secret
or Service edited by hand, a result deleted from the bucket) the next full reconcile sees: every
`full_resync_seconds` at the latest, and at once on any change of the resource or its Deployment.

Before any request on a spec's behalf the operator's policy is checked (endpoints, credentials,
images, ServiceAccount: `reconcile.policy`) and so is the ownership of the serving names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from optimodel.contentkey import recipe_key
from optimodel.controller.artifacts import Artifacts, InvalidResult
from optimodel.controller.kube import CredentialsError, Kube
from optimodel.controller.metrics import Metrics
from optimodel.controller.scrape import pod_texts
from optimodel.errors import AccessDeniedError, NotFoundError, OptimodelError, SpecError, StorageError
from optimodel.reconcile import (
    Desired,
    Event,
    JobObservation,
    Observed,
    OptimizedModelStatus,
    Outcome,
    Problem,
    compute_outcome,
    current_job,
    desired_children,
    previous_status,
    remember_failure,
)
from optimodel.reconcile import reasons as r
from optimodel.reconcile.analysis import Figures, add_pod
from optimodel.reconcile.ownership import in_the_way
from optimodel.reconcile.policy import Policy, check_spec
from optimodel.reconcile.progressive import analyze, figures_wanted
from optimodel.resources import (
    RETRY_ANNOTATION,
    SERVING,
    Owner,
    PodDefaults,
    canary_name,
    candidate_component,
    child_name,
    job_image,
    serving_name,
    shadow_name,
)
from optimodel.resources.common import labels
from optimodel.spec import OptimizedModelSpec, parse_spec
from optimodel.storage import ArtifactStore

EventSink = Callable[[dict[str, Any], Event], None]


@dataclass(frozen=True)
class Settled:
    """A full reconcile that left the resource Ready: the versions it wrote or saw last, and when."""

    model_version: str
    deployment_version: str
    outcome: Outcome
    at: float  # time.monotonic()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_patch(status: OptimizedModelStatus) -> dict[str, Any]:
    """The status as a JSON merge patch: every field, None for those without a value, at every depth.

    A merge patch keeps what it does not name, so a field that went away (say
    `serving.autoscaler` once autoscaling is removed) must be sent as null to be deleted.
    """
    return status.model_dump(mode="json", by_alias=True)


def without_nulls(value: Any) -> Any:
    """`value` as the API server stores a merge patch of it: keys whose value is None are gone."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def _storage_problem(error: StorageError | NotFoundError, what: str) -> Problem:
    if isinstance(error, NotFoundError):
        return Problem(r.SOURCE_NOT_FOUND, f"{what}: {error}", retry=False)
    if isinstance(error, AccessDeniedError):
        return Problem(r.ACCESS_DENIED, f"{what}: {error}", retry=True)
    return Problem(r.STORAGE_UNAVAILABLE, f"{what}: {error}", retry=True)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        artifacts: Artifacts,
        pods: PodDefaults,
        metrics: Metrics,
        events: EventSink,
        now: Callable[[], str] = utc_now,
        policy: Policy | None = None,
        full_resync_seconds: float = 600,
    ) -> None:
        self.kube, self.artifacts, self.pods, self.metrics = kube, artifacts, pods, metrics
        self.events, self.now = events, now
        self.policy = policy or Policy()
        self.full_resync_seconds = full_resync_seconds
        self._settled: dict[tuple[str, str], Settled] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
            self._settled.pop((namespace, name), None)
        self.metrics.set_phase((namespace, name), None)

    def reconcile(self, namespace: str, name: str) -> Outcome | None:
        """Reconcile the object as it is now; None when it is gone or being deleted."""
        started = time.monotonic()
        with self._lock((namespace, name)):
            body = self.kube.get_model(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            try:
                settled = self._still_settled(body)
                if settled is not None:
                    self.metrics.reconciles.labels("ok").inc()
                    self.metrics.reconcile_seconds.observe(time.monotonic() - started)
                    return settled
                outcome, job_seconds = self._reconcile(body)
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                raise
        result = "permanent" if outcome.permanent else "retry" if outcome.retry_after else "ok"
        self.metrics.reconciles.labels(result).inc()
        self.metrics.reconcile_seconds.observe(time.monotonic() - started)
        self.metrics.observe((namespace, name), outcome, job_seconds)
        return outcome

    def _still_settled(self, body: dict[str, Any]) -> Outcome | None:
        """The outcome of the last full reconcile when it left the resource Ready, it is recent, and
        neither the resource nor its Deployment changed since; None when a full reconcile is due."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        settled = self._settled.get(key)
        if settled is None or meta.get("resourceVersion") != settled.model_version:
            return None
        if time.monotonic() - settled.at >= self.full_resync_seconds:
            return None
        owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        deployment = self.kube.get_deployment(owner.namespace, serving_name(owner))
        if deployment is None or deployment.resource_version != settled.deployment_version:
            return None
        return settled.outcome

    def _settle(self, body: dict[str, Any], observed: Observed, outcome: Outcome, version: str | None) -> None:
        """Remember a full reconcile that left the resource Ready and wanting nothing; forget any other."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        deployment = observed.deployment
        quiet = outcome.status.phase == r.READY_PHASE and not outcome.retry_after and not outcome.permanent
        if quiet and version and deployment is not None and deployment.resource_version:
            self._settled[key] = Settled(version, deployment.resource_version, outcome, time.monotonic())
        else:
            self._settled.pop(key, None)

    def _reconcile(self, body: dict[str, Any]) -> tuple[Outcome, float | None]:
        now = self.now()
        observed, store = self._observe(body)
        observed = remember_failure(observed)  # a failed Job deleted by its TTL still counts
        observed = self._read_figures(observed)
        observed = replace(observed, analysis=analyze(observed, now))
        desired = desired_children(observed, self.pods)
        observed = self._apply(body, observed, desired)
        if store is not None:
            observed = self._read_finished_job(observed, store)
        outcome = compute_outcome(observed, now)
        meta = body["metadata"]
        patch = status_patch(outcome.status)
        if without_nulls(patch) == body.get("status"):  # a full resync of a settled resource, mostly
            version: str | None = meta.get("resourceVersion")
        else:
            version = self.kube.write_status(meta["namespace"], meta["name"], patch)
        for event in outcome.events:
            self.events(body, event)
        self._settle(body, observed, outcome, version)
        return outcome, observed.job.duration_seconds if observed.job else None

    def _observe(self, body: dict[str, Any]) -> tuple[Observed, ArtifactStore | None]:
        meta = body["metadata"]
        owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        base = Observed(
            owner=owner,
            generation=meta.get("generation", 0),
            spec=None,
            previous=previous_status(body.get("status")),
            retry_requested=(meta.get("annotations") or {}).get(RETRY_ANNOTATION),
            deployment=self.kube.get_deployment(owner.namespace, serving_name(owner)),
            autoscaler=self.kube.get_autoscaler(owner.namespace, serving_name(owner)),
            shadow=self.kube.get_deployment(owner.namespace, shadow_name(owner)),
        )
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError as error:
            return replace(base, problem=Problem(r.INVALID_SPEC, str(error), retry=False)), None
        base = replace(base, spec=spec)
        # Read only where a canary may run or have run: one GET less per reconcile for everyone else.
        previous = base.previous.analysis if base.previous else None
        if spec.rollout.strategy == "canary" or (previous is not None and previous.steps):
            base = replace(base, canary=self.kube.get_deployment(owner.namespace, canary_name(owner)))
        refused = check_spec(spec, self.policy, self.pods.job_image, self.pods.serve_image)
        if refused is not None:
            return replace(base, problem=refused), None
        component = candidate_component(spec)
        candidate_service = self.kube.get_service(owner.namespace, child_name(owner, component)) if component else None
        blocked = in_the_way(base, self.kube.get_service(owner.namespace, serving_name(owner)), candidate_service)
        if blocked is not None:
            return replace(base, problem=blocked), None
        try:
            store = self._store(owner, spec)
        except CredentialsError as error:
            return replace(base, problem=Problem(r.CREDENTIALS_MISSING, str(error), retry=True)), None
        try:
            version = self.artifacts.source_version(store, spec)
        except (StorageError, NotFoundError) as error:
            return replace(base, problem=_storage_problem(error, "spec.source.uri")), None
        key = recipe_key(spec, version, job_image(spec, self.pods))
        base = replace(base, recipe_key=key)
        try:
            stored = self.artifacts.stored_result(store, spec, key)
        except InvalidResult as error:
            problem = Problem(r.RESULT_INVALID, f"spec.artifacts.uri: {error}; never served", retry=True)
            return replace(base, problem=problem), None
        except StorageError as error:
            problem = Problem(
                r.STORAGE_UNAVAILABLE, f"spec.artifacts.uri: stored result unreadable: {error}", True
            )
            return replace(base, problem=problem), None
        # The Job is read even when the result is stored: status names it, and a result this resource's
        # own Job produced is `ResultStored`, not a `CacheHit`. The current Job is the latest attempt of
        # the recipe (a retry adds one). Its pods are read only while no result is stored: their
        # termination message is the fallback.
        job = current_job(self.kube.list_jobs(owner.namespace, owner.name, owner.uid), key)
        if job is not None and job.finished and stored is None:
            job = replace(job, termination=self.kube.job_termination(owner.namespace, job.name))
        elif job is not None and stored is None:
            job = replace(job, waiting=self.kube.pod_waiting(owner.namespace, f"job-name={job.name}"))
        base = replace(base, job=job)
        if stored is not None:
            return replace(base, result=stored[0], report_uri=stored[1]), store
        return base, store

    def _read_figures(self, observed: Observed) -> Observed:
        """The serving pods' figures for a shadow candidate whose pods run, when its analysis is open."""
        candidate = figures_wanted(observed)
        if candidate is None or observed.spec is None:
            return observed
        serving, owner = observed.spec.serving, observed.owner
        selector = ",".join(f"{key}={value}" for key, value in labels(owner, SERVING).items())
        figures = Figures()
        for ip in self.kube.ready_pod_ips(owner.namespace, selector):
            for text in pod_texts(ip, serving.port, serving.workers):
                add_pod(figures, text, candidate)
        return replace(observed, figures=figures if figures.pods else None)

    def _store(self, owner: Owner, spec: OptimizedModelSpec) -> ArtifactStore:
        secret = spec.artifacts.s3.credentials_secret
        credentials = self.kube.credentials(owner.namespace, secret) if secret else None
        return self.artifacts.store(spec, credentials, owner.uid)

    def _read_finished_job(self, observed: Observed, store: ArtifactStore) -> Observed:
        """A Job that completed before its pointer was readable: take the report it names."""
        job = observed.job
        report_uri = (job.termination or {}).get("reportUri") if job and job.finished == "Complete" else None
        if observed.result is not None or not isinstance(report_uri, str) or observed.spec is None:
            return observed
        try:
            report = self.artifacts.report(store, observed.spec, report_uri)
        except OptimodelError:  # unreadable or not checking out: never served; ResultMissing says so
            return observed
        return replace(observed, result=report, report_uri=report_uri)

    def _apply(self, body: dict[str, Any], observed: Observed, desired: Desired) -> Observed:
        new_job = None
        if desired.job is not None:
            new_job = desired.job["metadata"]["name"]
            if self.kube.create_job(desired.job):
                self.metrics.jobs_created.inc()
                self.events(body, Event("Normal", r.JOB_CREATED, f"created Job {new_job}"))
            observed = replace(observed, job=JobObservation(name=new_job))
        retried = desired.retry.event(new_job) if desired.retry is not None else None
        if retried is not None:
            self.events(body, retried)
        if desired.service is not None:
            self.kube.apply_service(desired.service)
        # An autoscaler no longer wanted goes before the fixed count is applied again, so that it
        # cannot scale the Deployment after; a new one comes after the Deployment it scales exists.
        if desired.stale_autoscaler is not None:
            self.kube.delete_autoscaler(observed.owner.namespace, desired.stale_autoscaler)
            observed = replace(observed, autoscaler=None)
        if desired.replicas_handover is not None:
            self.kube.hand_over_replicas(desired.replicas_handover)
        if desired.deployment is not None:
            deployment = self.kube.apply_deployment(desired.deployment)
            if not deployment.rolled_out:
                labels = desired.deployment["spec"]["selector"]["matchLabels"]
                selector = ",".join(f"{key}={value}" for key, value in labels.items())
                deployment = replace(deployment, waiting=self.kube.pod_waiting(observed.owner.namespace, selector))
            observed = replace(observed, deployment=deployment)
            if desired.rollout and desired.served is not None:
                self.metrics.rollouts.inc()
                self.events(
                    body,
                    Event(
                        "Normal",
                        r.ROLLOUT_STARTED,
                        f"rolling out sha256:{desired.served.sha256[:12]} ({desired.served.uri})",
                    ),
                )
        if desired.autoscaler is not None:
            observed = replace(observed, autoscaler=self.kube.apply_autoscaler(desired.autoscaler))
        if desired.candidate_service is not None:
            self.kube.apply_service(desired.candidate_service)
        for candidate in desired.candidate_deployments:
            found = self.kube.apply_deployment(candidate)
            if candidate["metadata"]["name"] == canary_name(observed.owner):
                observed = replace(observed, canary=found)
            else:
                observed = replace(observed, shadow=found)
        return observed
