"""Status tells the truth to kstatus (Flux) and Argo CD from the first instant.

A new resource reads `status: {observedGeneration: -1}` (the CRD's default) until the operator has
judged it; after that, every state that does not serve the current spec is exactly one of
`Reconciling` (work under way) or `Stalled` (nothing changes until the spec does), never both, and
the True one says why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from optimodel.crd import build_crd
from optimodel.reconcile import (
    NOT_OBSERVED,
    DeploymentObservation,
    JobObservation,
    Observed,
    Problem,
    compute_outcome,
    previous_status,
)
from optimodel.reconcile import reasons as r
from optimodel.reconcile.conditions import Condition, find
from optimodel.reconcile.status import OptimizedModelStatus
from tests.support.kstatus import kstatus
from tests.unit.test_reconcile import T0, T1, deployment, observed, report, spec

JOB = "digits-1212121212"


def _crd_status_default() -> dict[str, Any]:
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(root["properties"]["status"]["default"])


def test_a_new_resource_reads_in_progress_until_the_operator_judges_it() -> None:
    default = _crd_status_default()
    assert default == {"observedGeneration": NOT_OBSERVED}
    assert kstatus(1, default) == "InProgress"
    assert kstatus(1, {}) == "Current"  # the trap the default closes: an empty status is Current


def test_the_defaulted_status_is_no_previous_status() -> None:
    assert previous_status({"observedGeneration": NOT_OBSERVED}) is None
    # Even a default that someday names a phase is not a status the operator wrote.
    assert previous_status({"observedGeneration": NOT_OBSERVED, "phase": "Pending"}) is None
    assert previous_status(None) is None and previous_status({}) is None
    assert previous_status({"observedGeneration": 3, "phase": 7}) is None  # unparseable: start afresh
    first = compute_outcome(observed(), T0).status
    assert previous_status(first.model_dump(mode="json", by_alias=True)) == first


def test_the_first_status_replaces_the_default() -> None:
    state = observed(generation=1, previous=previous_status({"observedGeneration": NOT_OBSERVED}))
    status = compute_outcome(state, T0).status.model_dump(mode="json", by_alias=True)
    assert status["observedGeneration"] == 1
    assert kstatus(1, status) == "InProgress"  # a Job to run: Reconciling
    assert {c["lastTransitionTime"] for c in status["conditions"]} == {T0}
    assert OptimizedModelStatus.model_fields["observed_generation"].default == NOT_OBSERVED


FAILED_JOB = JobObservation(
    name=JOB, failed=1, finished="Failed", termination={"error": "no array y", "reason": "InvalidInput"}
)
LATE_JOB = JobObservation(name=JOB, failed=1, finished="Failed", condition_reason="DeadlineExceeded")
ROLLING = DeploymentObservation(
    name="digits-serving",
    generation=2,
    observed_generation=2,
    replicas=2,
    updated_replicas=1,
    ready_replicas=1,
    available_replicas=1,
    served=deployment("aa").served,
)
# (state, what kstatus must read, the reason of Ready: what blocks, or why it serves)
STATES: dict[str, tuple[Observed, str, str]] = {
    "no job yet": (observed(), "InProgress", r.JOB_RUNNING),
    "job running": (observed(job=JobObservation(name=JOB, active=1)), "InProgress", r.JOB_RUNNING),
    "job failed": (observed(job=FAILED_JOB), "Failed", r.JOB_FAILED),
    "job past deadline": (observed(job=LATE_JOB), "Failed", r.JOB_DEADLINE_EXCEEDED),
    "report not readable yet": (
        observed(job=JobObservation(name=JOB, succeeded=1, finished="Complete")),
        "InProgress",
        r.RESULT_MISSING,
    ),
    "invalid spec": (observed(spec=None, problem=Problem(r.INVALID_SPEC, "bad", False)), "Failed", r.INVALID_SPEC),
    "source missing": (observed(problem=Problem(r.SOURCE_NOT_FOUND, "gone", False)), "Failed", r.SOURCE_NOT_FOUND),
    "access denied": (observed(problem=Problem(r.ACCESS_DENIED, "403", True)), "Failed", r.ACCESS_DENIED),
    "credentials missing": (
        observed(problem=Problem(r.CREDENTIALS_MISSING, "no secret", True)),
        "Failed",
        r.CREDENTIALS_MISSING,
    ),
    "storage down": (
        observed(problem=Problem(r.STORAGE_UNAVAILABLE, "refused", True)),
        "InProgress",
        r.STORAGE_UNAVAILABLE,
    ),
    "result, no deployment": (observed(result=report("aa"), report_uri="s3://r"), "InProgress", r.ROLLOUT_STARTED),
    "rolling out": (
        observed(result=report("aa"), report_uri="s3://r", deployment=ROLLING),
        "InProgress",
        r.ROLLOUT_IN_PROGRESS,
    ),
    "rollout past deadline": (
        observed(
            result=report("aa"), report_uri="s3://r", deployment=replace(ROLLING, progress_deadline_exceeded=True)
        ),
        "Failed",
        r.ROLLOUT_STALLED,
    ),
    "ready": (observed(result=report("aa"), report_uri="s3://r", deployment=deployment("aa")), "Current", r.AVAILABLE),
    "gates failed, serving the last good": (
        observed(
            spec=spec(maxMetricDrop=0.001),
            result=report("bb", drop=0.02),
            report_uri="s3://r",
            deployment=deployment("aa"),
        ),
        "Failed",
        r.GATES_FAILED_REASON,
    ),
    "gates failed, nothing served": (
        observed(spec=spec(maxMetricDrop=0.001), result=report("bb", drop=0.02), report_uri="s3://r"),
        "Failed",
        r.GATES_FAILED_REASON,
    ),
    "no candidate": (
        observed(result=report("aa").model_copy(update={"artifact": None, "metrics": None}), report_uri="s3://r"),
        "Failed",
        r.NO_CANDIDATE,
    ),
}


def _by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


@pytest.mark.parametrize("name", list(STATES))
def test_every_state_is_serving_reconciling_or_stalled(name: str) -> None:
    state, expected, reason = STATES[name]
    outcome = compute_outcome(state, T1)
    conditions = _by_type(outcome.status.conditions)
    ready, reconciling, stalled = (conditions[t] for t in (r.READY, r.RECONCILING, r.STALLED))
    true = [c for c in (ready, reconciling, stalled) if c.status == "True"]
    assert len(true) == 1, [(c.type, c.status) for c in (ready, reconciling, stalled)]
    assert ready.reason == reason and true[0].reason in (reason, r.PROGRESSING)
    assert true[0].message and true[0].message == outcome.status.message == ready.message  # says why
    dumped = outcome.status.model_dump(mode="json", by_alias=True)
    assert kstatus(state.generation, dumped) == expected
    assert kstatus(state.generation + 1, dumped) == "InProgress"  # a newer spec is not judged yet
    assert find(outcome.status.conditions, r.READY) is ready
