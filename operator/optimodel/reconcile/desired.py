"""Observed state -> the children that should exist. Pure layer.

The Job exists only until a result is stored, and a failed one runs again only when a retry is
requested (`retry`); the Deployment serves the candidate when it passed its gates, otherwise
whatever it served before (read from its own annotations): a model that fails never replaces one
that passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optimodel.gates import all_passed, evaluate_gates
from optimodel.reconcile.observed import Observed
from optimodel.reconcile.retry import Retry, decide_retry
from optimodel.report import GateResult, Report
from optimodel.resources import PodDefaults, ServedArtifact, build_deployment, build_job, build_service


@dataclass(frozen=True)
class Desired:
    job: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
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


def desired_children(observed: Observed, defaults: PodDefaults) -> Desired:
    spec = observed.spec
    retry = decide_retry(observed)
    if spec is None:
        return Desired(retry=retry)
    job = _job(observed, defaults, retry)
    before = observed.deployment.served if observed.deployment else None
    served = _candidate(observed.result) if observed.result and candidate_passed(observed) else before
    if served is None:
        return Desired(job=job, retry=retry)
    return Desired(
        job=job,
        deployment=build_deployment(spec, observed.owner, served, defaults),
        service=build_service(spec, observed.owner),
        served=served,
        rollout=before is None or before.sha256 != served.sha256,
        retry=retry,
    )
