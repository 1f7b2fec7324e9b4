"""Observed state -> the children that should exist. Pure layer.

The Job exists only until a result is stored, and a failed one runs again only when a retry is
requested (`retry`); the Deployment serves the candidate when it passed its gates, otherwise
whatever it served before (read from its own annotations): a model that fails never replaces one
that passed.

With `spec.rollout.strategy` shadow or canary a candidate replaces a served model only once its
analysis passed (`observed.analysis`, judged by `reconcile.progressive`); meanwhile its pods run in
a Deployment of their own (`<name>-shadow`, `<name>-canary`), scaled to zero once the verdict is in,
and the serving pods mirror to its Service. Under canary the candidate's pods also take a share of
the live traffic: they carry the traffic label the serving Service selects by, once every serving
pod carries it too (the serving pods get it first, which rolls them once).

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
    CANARY,
    SHADOW,
    PodDefaults,
    ServedArtifact,
    build_autoscaler,
    build_candidate_deployment,
    build_deployment,
    build_job,
    build_replicas_handover,
    build_service,
    canary_replicas,
    candidate_component,
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
    # The candidate's pods, or them scaled to zero (and a candidate left by the other strategy).
    candidate_deployments: list[dict[str, Any]] = field(default_factory=list)
    candidate_service: dict[str, Any] | None = None  # what the serving pods mirror to
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


def canary_share(observed: Observed, percent: int) -> tuple[int, int]:
    """The candidate's pods for a step, and their actual share (percent) of the Service's pods.

    None of them until every serving pod carries the traffic label: before, the Service does not
    select by it and the candidate's pods would answer no live request.
    """
    if not observed.serving_live or observed.deployment is None:
        return 0, 0
    serving = max(observed.deployment.replicas, 1)
    canary = canary_replicas(serving, percent)
    return canary, round(100 * canary / (serving + canary))


def _candidate_replicas(observed: Observed, component: str) -> int:
    spec, analysis = observed.spec, observed.analysis
    assert spec is not None and analysis is not None
    if component == SHADOW:
        return shadow_replicas(spec)
    steps = spec.rollout.canary_steps
    return canary_share(observed, steps[min(analysis.step or 1, len(steps)) - 1])[0]


def _candidate_deployments(observed: Observed, defaults: PodDefaults) -> list[dict[str, Any]]:
    """The candidate's pods while its analysis runs; afterwards, and for a Deployment of the other
    strategy, the same Deployment scaled to zero."""
    spec, analysis, report = observed.spec, observed.analysis, observed.result
    assert spec is not None
    running = candidate_component(spec) if analysis is not None and analysis.phase == r.ANALYZING else None
    wanted = []
    for component, found in ((SHADOW, observed.shadow), (CANARY, observed.canary)):
        if component == running and report is not None:
            replicas = _candidate_replicas(observed, component)
            candidate = _candidate(report)
            wanted.append(build_candidate_deployment(spec, observed.owner, candidate, defaults, component, replicas))
            continue
        ours = found is not None and found.controller_uid == observed.owner.uid
        if found is not None and ours and found.served is not None and found.replicas > 0:
            wanted.append(build_candidate_deployment(spec, observed.owner, found.served, defaults, component, 0))
    return wanted


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
    component = candidate_component(spec)
    autoscaled = spec.serving.autoscaling is not None
    return Desired(
        job=job,
        deployment=build_deployment(spec, observed.owner, served, defaults),
        service=build_service(spec, observed.owner, live=observed.serving_live),
        autoscaler=build_autoscaler(spec, observed.owner) if autoscaled else None,
        replicas_handover=_replicas_handover(observed, spec),
        stale_autoscaler=stale,
        candidate_deployments=_candidate_deployments(observed, defaults),
        candidate_service=build_service(spec, observed.owner, component) if component else None,
        served=served,
        rollout=before is None or before.sha256 != served.sha256,
        retry=retry,
    )
