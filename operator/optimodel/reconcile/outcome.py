"""Observed state (after the children were applied) -> status, Events and when to look again. Pure layer.

Conditions follow the Kubernetes API conventions and kstatus: `Ready` is True only when the
candidate of the current spec passed its gates and its Deployment is rolled out and available;
`Reconciling` while work is under way; `Stalled` when nothing will change without a change of the
spec (or of the objects it names).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optimodel.gates import summarize_failures
from optimodel.quantity import format_bytes
from optimodel.reconcile import reasons as r
from optimodel.reconcile.conditions import Condition, condition, merge_conditions
from optimodel.reconcile.desired import candidate_passed, gate_results, own_autoscaler
from optimodel.reconcile.event import Event
from optimodel.reconcile.observed import DeploymentObservation, JobObservation, Observed
from optimodel.reconcile.retry import failure_record, handled_retry, retry_command
from optimodel.reconcile.status import (
    MAX_USED_RESULTS,
    AutoscalerStatus,
    CandidateStatus,
    GateRow,
    OptimizedModelStatus,
    ServingStatus,
    UsedResult,
)
from optimodel.report import Report
from optimodel.resources import Owner, job_name, serving_name, serving_url

WARNING_REASONS = frozenset(
    {
        r.INVALID_SPEC,
        r.SOURCE_NOT_FOUND,
        r.ACCESS_DENIED,
        r.STORAGE_UNAVAILABLE,
        r.CREDENTIALS_MISSING,
        r.ENDPOINT_NOT_ALLOWED,
        r.LOCAL_FILE_NOT_ALLOWED,
        r.CREDENTIALS_REQUIRED,
        r.IMAGE_NOT_ALLOWED,
        r.SERVICE_ACCOUNT_NOT_ALLOWED,
        r.OBJECT_IN_THE_WAY,
        r.RESULT_INVALID,
        r.JOB_FAILED,
        r.JOB_DEADLINE_EXCEEDED,
        r.JOB_OUT_OF_MEMORY,
        r.JOB_CANNOT_START,
        r.ROLLOUT_CANNOT_START,
        r.RESULT_MISSING,
        r.GATES_FAILED_REASON,
        r.NO_CANDIDATE,
        r.ROLLOUT_STALLED,
        r.SHADOW_FAILED,
        r.CANARY_FAILED,
    }
)
EVENT_CONDITIONS = (r.OPTIMIZED, r.GATES_PASSED, r.READY)
RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    status: OptimizedModelStatus
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None  # look again after this many seconds: the same spec may work later
    permanent: str | None = None  # the spec itself is wrong: nothing to retry until it changes


def _short(sha256: str | None) -> str:
    return f"sha256:{sha256[:12]}" if sha256 else "nothing"


def _candidate(report: Report, report_uri: str | None, passed: bool) -> CandidateStatus:
    artifact, metrics = report.artifact, report.metrics
    fields: dict[str, object] = {}
    if artifact is not None:
        fields.update(
            artifact_uri=artifact.uri,
            sha256=artifact.sha256,
            size_bytes=artifact.size_bytes,
            size=format_bytes(artifact.size_bytes),
        )
    if metrics is not None:
        fields.update(
            size_ratio=round(metrics.size_ratio, 4),
            metric=metrics.metric,
            value=round(metrics.optimized, 6),
            baseline=round(metrics.baseline, 6),
            drop=round(metrics.drop, 6),
            latency_p95_ms=metrics.latency_p95_ms,
        )
    return CandidateStatus.model_validate(
        {
            "key": report.key,
            "report_uri": report_uri or "",
            "source_size_bytes": report.source.size_bytes,
            "method": report.method,
            "quantization": report.quantization,
            "chosen": report.chosen,
            "tried": max(1, len(report.candidates)),
            "cache_hit": report.cache_hit,
            "passed": passed,
            **fields,
        }
    )


def _autoscaler(observed: Observed) -> AutoscalerStatus | None:
    found = own_autoscaler(observed)
    if found is None:
        return None
    return AutoscalerStatus(
        name=found.name,
        min_replicas=found.min_replicas,
        max_replicas=found.max_replicas,
        target_cpu_utilization_percentage=found.target_cpu_utilization,
    )


def _serving(observed: Observed, deployment: DeploymentObservation | None) -> ServingStatus | None:
    if deployment is None:
        return None
    served = deployment.served
    return ServingStatus(
        deployment=deployment.name,
        service=serving_name(observed.owner),
        url=serving_url(observed.owner, observed.spec.serving.port) if observed.spec else None,
        key=served.key if served else None,
        artifact_uri=served.uri if served else None,
        sha256=served.sha256 if served else None,
        replicas=deployment.replicas,
        updated_replicas=deployment.updated_replicas,
        ready_replicas=deployment.ready_replicas,
        available_replicas=deployment.available_replicas,
        ready=f"{deployment.ready_replicas}/{deployment.replicas}",
        autoscaler=_autoscaler(observed),
    )


def _used_results(observed: Observed) -> list[UsedResult]:
    """The results used before, plus the current one: what deletionPolicy Delete removes later."""
    used = list(observed.previous.results) if observed.previous else []
    if observed.result is not None and observed.recipe_key and observed.spec is not None:
        current = UsedResult(
            artifacts_uri=observed.spec.artifacts.uri, recipe_key=observed.recipe_key, key=observed.result.key
        )
        if current not in used:
            used.append(current)
    return used[-MAX_USED_RESULTS:]


def _job_failure(job: JobObservation, owner: Owner) -> tuple[str, str]:
    """Why the Job failed, and how to run it again once fixed: the retry annotation, not a new spec."""
    term = job.termination or {}
    why = term.get("error") or job.condition_message or "the Job failed without a message"
    command = retry_command(owner)
    if job.condition_reason == "DeadlineExceeded":
        return r.JOB_DEADLINE_EXCEEDED, (
            f"Job {job.name} ran past spec.job.activeDeadlineSeconds: {why}; "
            f"raise it if the run needs longer, then retry: {command}"
        )
    if term.get("reason") == "OOMKilled":
        return r.JOB_OUT_OF_MEMORY, (
            f"Job {job.name} was killed for running out of memory (OOMKilled): {why}; "
            f"raise spec.job.resources.limits.memory, then retry: {command}"
        )
    detail = f" ({term['reason']})" if term.get("reason") else ""
    if term.get("reason") == r.STORAGE_UNAVAILABLE:  # every attempt of the Job met the outage
        return r.JOB_FAILED, f"Job {job.name} failed{detail}: {why}; once the store answers again, retry: {command}"
    return r.JOB_FAILED, f"Job {job.name} failed{detail}: {why}; fix the input, then retry: {command}"


@dataclass(frozen=True)
class _Progress:
    """Where the optimization stands: the Optimized condition and what it means for the phase."""

    ok: bool
    reason: str
    message: str
    phase: str
    stalled: bool = False
    retry: bool = False


def _progress(observed: Observed) -> _Progress:
    problem, job, result = observed.problem, observed.job, observed.result
    if problem is not None:
        phase = r.PENDING if problem.reason == r.STORAGE_UNAVAILABLE else r.FAILED
        return _Progress(
            False, problem.reason, problem.message, phase, stalled=phase == r.FAILED, retry=problem.retry
        )
    if result is not None:
        reason = r.CACHE_HIT if result.cache_hit or job is None else r.RESULT_STORED
        return _Progress(
            True, reason, f"result {result.key[:12]} stored at {observed.report_uri}", r.ROLLING_OUT
        )
    if job is not None and job.finished == "Failed":
        reason, message = _job_failure(job, observed.owner)
        return _Progress(False, reason, message, r.FAILED, stalled=True)
    if job is not None and job.finished == "Complete":
        return _Progress(
            False,
            r.RESULT_MISSING,
            f"Job {job.name} completed but its report cannot be read yet",
            r.PENDING,
            retry=True,
        )
    if job is not None and job.waiting is not None:
        fix = "import the image into the node or name one it has" if job.waiting.image_missing else "fix it"
        return _Progress(
            False,
            r.JOB_CANNOT_START,
            f"Job {job.name} cannot start: {job.waiting.describe()}; {fix} (spec.job.image or the operator's "
            "Job image); the Job goes on once it can",
            r.FAILED,
            stalled=True,
            retry=True,
        )
    name = job.name if job else job_name(observed.owner, observed.recipe_key or "")
    return _Progress(False, r.JOB_RUNNING, f"Job {name} is optimizing the model", r.OPTIMIZING)


def _gates_condition(observed: Observed, passed: bool) -> tuple[str, str, str, str]:
    report = observed.result
    if report is None:
        return condition(r.GATES_PASSED, None, r.AWAITING_RESULT, "no result to judge yet")
    if report.artifact is None or report.metrics is None:
        tried = ", ".join(c.name for c in report.candidates) or report.method
        return condition(
            r.GATES_PASSED, False, r.NO_CANDIDATE, f"no candidate produced a model (tried {tried})"
        )
    if passed:
        return condition(
            r.GATES_PASSED, True, r.GATES_PASSED_REASON, f"{len(gate_results(observed))} gates passed"
        )
    return condition(
        r.GATES_PASSED,
        False,
        r.GATES_FAILED_REASON,
        f"candidate {_short(report.artifact.sha256)} failed: {summarize_failures(gate_results(observed))}",
    )


def _ready(
    observed: Observed, progress: _Progress, passed: bool, gates: tuple[str, str, str, str]
) -> _Progress:
    """The Ready condition (as a _Progress): what is served, and whether that is the candidate."""
    deployment, report = observed.deployment, observed.result
    serving = f"; serving {_short(deployment.served.sha256)}" if deployment and deployment.served else ""
    if not progress.ok:
        return _Progress(
            False,
            progress.reason,
            progress.message + serving,
            progress.phase,
            progress.stalled,
            progress.retry,
        )
    if not passed:
        return _Progress(
            False, gates[2], gates[3] + (serving or "; nothing served"), r.GATES_FAILED, stalled=True
        )
    assert report is not None and report.artifact is not None
    sha = report.artifact.sha256
    analysis = observed.analysis
    canary = analysis is not None and analysis.steps is not None
    what = "canary analysis" if canary else "shadow analysis"
    if analysis is not None and analysis.phase == r.ANALYZING:
        return _Progress(
            False,
            r.CANARY_ANALYZING if canary else r.SHADOW_ANALYZING,
            f"{what} of {_short(sha)} on live traffic: {analysis.message}{serving}",
            r.ANALYZING,
            retry=True,  # look again soon: the figures grow with the traffic
        )
    if analysis is not None and analysis.phase == r.ANALYSIS_FAILED:
        back = "; every live request goes to the served model again" if canary else ""
        return _Progress(
            False,
            r.CANARY_FAILED if canary else r.SHADOW_FAILED,
            f"the {what} stopped {_short(sha)}: {analysis.message}{serving}{back}; change the spec "
            f"for a new candidate, or judge this one on more traffic: {retry_command(observed.owner)}",
            r.ANALYSIS_FAILED_PHASE,
            stalled=True,
        )
    if deployment is None or deployment.served is None or deployment.served.sha256 != sha:
        return _Progress(False, r.ROLLOUT_STARTED, f"rolling out {_short(sha)}{serving}", r.ROLLING_OUT)
    if deployment.progress_deadline_exceeded and not deployment.rolled_out:
        return _Progress(
            False,
            r.ROLLOUT_STALLED,
            f"Deployment {deployment.name} exceeded its progress deadline "
            f"({deployment.available_replicas}/{deployment.replicas} available); see its pods",
            r.ROLLING_OUT,
            stalled=True,
        )
    if not deployment.rolled_out and deployment.waiting is not None:
        return _Progress(
            False,
            r.ROLLOUT_CANNOT_START,
            f"Deployment {deployment.name} cannot roll out {_short(sha)}: {deployment.waiting.describe()}; "
            f"the pods of the previous model keep serving ({deployment.available_replicas}/"
            f"{deployment.replicas} available)",
            r.ROLLING_OUT,
            stalled=True,
            retry=True,
        )
    if not deployment.rolled_out:
        return _Progress(
            False,
            r.ROLLOUT_IN_PROGRESS,
            f"{deployment.updated_replicas}/{deployment.replicas} "
            f"updated, {deployment.available_replicas} available, serving {_short(sha)}",
            r.ROLLING_OUT,
        )
    reason = r.SCALED_TO_ZERO if deployment.replicas == 0 else r.AVAILABLE
    return _Progress(
        True,
        reason,
        f"serving {_short(sha)} on {deployment.ready_replicas}/{deployment.replicas} ready pods",
        r.READY_PHASE,
    )


def _events(before: list[Condition], after: list[Condition]) -> list[Event]:
    """One Event per transition of a condition (status or reason changed): none on a quiet resync."""
    old = {item.type: (item.status, item.reason) for item in before}
    events = []
    for item in after:
        if item.type in EVENT_CONDITIONS and old.get(item.type) != (item.status, item.reason):
            kind = "Warning" if item.reason in WARNING_REASONS else "Normal"
            events.append(Event(kind, item.reason, f"{item.type}={item.status}: {item.message}"))
    return events


def _verdict_event(observed: Observed) -> list[Event]:
    """An Event when an analysis passed, or a canary step held, at this reconcile (a failure is the
    Ready transition's)."""
    analysis, previous = observed.analysis, observed.previous.analysis if observed.previous else None
    if analysis is None or previous == analysis:
        return []
    sha = _short(analysis.candidate_sha256)
    if analysis.phase == r.ANALYSIS_PASSED:
        reason, what = (r.CANARY_PASSED, "canary") if analysis.steps else (r.SHADOW_PASSED, "shadow")
        return [Event("Normal", reason, f"promoting {sha} after its {what} analysis: {analysis.message}")]
    if previous is None or previous.candidate_sha256 != analysis.candidate_sha256:
        return []
    if analysis.phase == r.ANALYZING and previous.step is not None and (analysis.step or 0) > previous.step:
        return [Event("Normal", r.CANARY_STEP_PASSED, f"{sha}: {analysis.message}")]
    return []


def compute_outcome(observed: Observed, now: str) -> Outcome:
    """Status and Events for what was observed; `now` is RFC 3339, passed in to keep this pure."""
    passed = candidate_passed(observed)
    progress = _progress(observed)
    gates = _gates_condition(observed, passed)
    ready = _ready(observed, progress, passed, gates)
    # kstatus reads Stalled=True as Failed and Reconciling=True as InProgress: a resource that does
    # not serve its current spec is exactly one of the two, never both, with the reason and message of
    # what blocks it; a serving one is neither.
    reconciling = not ready.ok and not ready.stalled
    wanted = [
        condition(r.OPTIMIZED, progress.ok, progress.reason, progress.message),
        gates,
        condition(r.READY, ready.ok, ready.reason, ready.message),
        condition(r.RECONCILING, reconciling, r.PROGRESSING if reconciling else r.RECONCILED, ready.message),
        condition(
            r.STALLED,
            ready.stalled,
            ready.reason if ready.stalled else r.RECONCILED,
            ready.message if ready.stalled else "",
        ),
    ]
    previous = observed.previous.conditions if observed.previous else []
    conditions = merge_conditions(previous, wanted, observed.generation, now)
    results = gate_results(observed)
    report = observed.result
    status = OptimizedModelStatus(
        observed_generation=observed.generation,
        phase=ready.phase,
        message=ready.message,
        recipe_key=observed.recipe_key,
        job_name=observed.job.name if observed.job else None,
        candidate=_candidate(report, observed.report_uri, passed) if report else None,
        gates=[GateRow.of(g) for g in results],
        gates_summary=f"{sum(g.passed for g in results)}/{len(results)}" if report else None,
        serving=_serving(observed, observed.deployment),
        analysis=observed.analysis,
        last_handled_retry_at=handled_retry(observed),
        failed_job=failure_record(observed),
        results=_used_results(observed),
        conditions=conditions,
    )
    permanent = progress.message if progress.reason == r.INVALID_SPEC else None
    retry = RETRY_SECONDS if ready.retry else None
    return Outcome(
        status=status,
        events=_events(previous, conditions) + _verdict_event(observed),
        retry_after=retry,
        permanent=permanent,
    )
