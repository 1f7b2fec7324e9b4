"""Observed state -> the children that should exist. Pure layer.

The Job exists only until a result is stored, and a failed one runs again only when a retry is
requested (`retry`); the Deployment serves the candidate when it passed its gates, otherwise
whatever it served before (read from its own annotations): a model that fails never replaces one
that passed.

With `spec.rollout.strategy: shadow` a candidate replaces a served model only once its shadow
analysis passed (`observed.analysis`, judged by `reconcile.shadow`); meanwhile its pods run in a
Deployment of their own, scaled to zero once the verdict is in, and the serving pods mirror to the
shadow Service.

With `spec.serving.autoscaling` a HorizontalPodAutoscaler goes with the Deployment, which then
carries no replica count: the autoscaler owns it. Without it, an autoscaler this resource made
earlier is deleted and the Deployment's fixed count is applied again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optimodel.gates import all_passed, evaluate_gates
from optimodel.reconcile import reasons as r
from optimodel.reconcile.observed import AutoscalerObservation, Observed
from optimodel.reconcile.retry import Retry, decide_retry
from optimodel.report import GateResult, Report
from optimodel.resources import (
    SHADOW,
    PodDefaults,
    ServedArtifact,
    build_autoscaler,
    build_deployment,
    build_job,
    build_replicas_handover,
    build_service,
    build_shadow_deployment,
    shadow_replicas,
)
from optimodel.spec import OptimizedModelSpec


@dataclass(frozen=True)
class Desired:
    job: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    autoscaler: dict[str, Any] | None = None  # applied after the Deployment it scales
    replicas_handover: dict[str, Any] | None = None  # applied before the Deployment: see below
    shadow_deployment: dict[str, Any] | None = None  # the candidate's pods, or them scaled to zero
    shadow_service: dict[str, Any] | None = None  # what the serving pods mirror to
    stale_autoscaler: AutoscalerObservation | None = None  # this resource's autoscaler, no longer wanted
    served: ServedArtifact | None = None
    rollout: bool = False  # the served model changes: a new rollout starts
    retry: Retry | None = None  # the answer to a new retry request (the Job is then its new attempt)
    notes: list[str] = field(default_factory=list)


def gate_results(observed: Observed) -> list[GateResult]:
    """The gates of the current spec on the stored metrics: tightening a gate needs no new Job."""
    report, spec = observed.result, observed.spec
    if report is None or spec is None or report.metrics is None or report.artifact is None:
        return []
    return evaluate_gates(spec.gates, report.metrics, report.artifact.size_bytes)


def candidate_passed(observed: Observed) -> bool:
    report = observed.result
    return (
        report is not None
        and report.artifact is not None
        and report.metrics is not None
        and all_passed(gate_results(observed))
    )


def _candidate(report: Report) -> ServedArtifact:
    assert report.artifact is not None
    return ServedArtifact(key=report.key, uri=report.artifact.uri, sha256=report.artifact.sha256)


def _job(observed: Observed, defaults: PodDefaults, retry: Retry | None) -> dict[str, Any] | None:
    """The first Job of a recipe while nothing is stored, or the next attempt when a retry asks for it."""
    spec, key = observed.spec, observed.recipe_key
    if spec is None or key is None or observed.problem is not None or observed.result is not None:
        return None
    if retry is not None and retry.failed is not None:
        return build_job(spec, observed.owner, key, defaults, attempt=retry.attempt, retry_token=retry.token)
    return build_job(spec, observed.owner, key, defaults) if observed.job is None else None


def own_autoscaler(observed: Observed) -> AutoscalerObservation | None:
    """The observed autoscaler when this resource controls it; one of someone else is never touched."""
    found = observed.autoscaler
    return found if found is not None and found.controller_uid == observed.owner.uid else None


def _replicas_handover(observed: Observed, spec: OptimizedModelSpec) -> dict[str, Any] | None:
    """The Deployment's current count, kept when the operator hands `replicas` over to the autoscaler.

    Needed only while the operator's own apply still owns `spec.replicas` (a fixed count was
    applied before): dropping the field from the apply would otherwise reset it to 1. The count is
    brought within the autoscaler's bounds (0 would even switch the autoscaler off).
    """
    deployment, autoscaling = observed.deployment, spec.serving.autoscaling
    if deployment is None or not deployment.owns_replicas or autoscaling is None:
        return None
    replicas = min(max(deployment.replicas, autoscaling.min_replicas), autoscaling.max_replicas)
    return build_replicas_handover(observed.owner, replicas)


def _shadow_deployment(observed: Observed, defaults: PodDefaults) -> dict[str, Any] | None:
    """The candidate's pods while its analysis runs; afterwards the same Deployment scaled to zero."""
    spec, analysis, report, found = observed.spec, observed.analysis, observed.result, observed.shadow
    assert spec is not None
    if analysis is not None and analysis.phase == r.ANALYZING and report is not None:
        return build_shadow_deployment(spec, observed.owner, _candidate(report), defaults, shadow_replicas(spec))
    ours = found is not None and found.controller_uid == observed.owner.uid
    if found is not None and ours and found.served is not None and found.replicas > 0:
        return build_shadow_deployment(spec, observed.owner, found.served, defaults, 0)
    return None


def desired_children(observed: Observed, defaults: PodDefaults) -> Desired:
    spec = observed.spec
    retry = decide_retry(observed)
    if spec is None or (observed.problem is not None and observed.problem.reason == r.OBJECT_IN_THE_WAY):
        return Desired(retry=retry)  # nothing is applied over an object of someone else
    job = _job(observed, defaults, retry)
    stale = own_autoscaler(observed) if spec.serving.autoscaling is None else None
    before = observed.deployment.served if observed.deployment else None
    served = _candidate(observed.result) if observed.result and candidate_passed(observed) else before
    analysis = observed.analysis
    if analysis is not None and analysis.phase != r.ANALYSIS_PASSED:
        served = before  # judged on mirrored traffic first; a failed candidate never serves
    if served is None:
        return Desired(job=job, retry=retry, stale_autoscaler=stale)
    shadowing = spec.rollout.shadow is not None
    autoscaled = spec.serving.autoscaling is not None
    return Desired(
        job=job,
        deployment=build_deployment(spec, observed.owner, served, defaults),
        service=build_service(spec, observed.owner),
        autoscaler=build_autoscaler(spec, observed.owner) if autoscaled else None,
        replicas_handover=_replicas_handover(observed, spec),
        stale_autoscaler=stale,
        shadow_deployment=_shadow_deployment(observed, defaults),
        shadow_service=build_service(spec, observed.owner, SHADOW) if shadowing else None,
        served=served,
        rollout=before is None or before.sha256 != served.sha256,
        retry=retry,
    )
