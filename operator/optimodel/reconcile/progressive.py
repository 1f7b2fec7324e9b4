"""Where the analysis of the current candidate on live traffic stands. Pure layer.

Strategies shadow and canary: a candidate that passed its gates does not replace the served model
at once. Its pods start beside the serving ones (a Deployment of their own), the serving pods
mirror live requests to it, and this module turns what the controller read from their /metrics
into the analysis status: Analyzing, then Passed (the candidate is promoted: it becomes the served
model) or Failed (its pods are scaled to zero, the served model stays). A verdict is final for that
candidate: later reconciles keep it rather than judging again on newer figures.

Under canary the candidate's pods also sit behind the serving Service, a larger share of them at
each step (`spec.rollout.steps`). Each step opens a window: `minRequests` more mirrored requests
within `maxSeconds`, after which every threshold must still hold on all the figures of the
analysis; the last step's pass is the promotion.

A retry request (`optimodel.io/retry-requested-at`) reopens a failed analysis: a new window of
`minRequests` more mirrored requests within `maxSeconds`, judged on all the figures.

Nothing is mirrored while nothing is served: the first model of a resource rolls out directly.
"""

from __future__ import annotations

from optimodel.reconcile import reasons as r
from optimodel.reconcile.analysis import Figures, elapsed_seconds, judge
from optimodel.reconcile.desired import canary_share, candidate_passed
from optimodel.reconcile.observed import Observed
from optimodel.reconcile.retry import reopened_analysis
from optimodel.reconcile.status import AnalysisStatus
from optimodel.spec import Metric


def analyzed_candidate(observed: Observed) -> str | None:
    """The sha256 of a candidate that goes through an analysis (running or decided), if any."""
    spec, report, deployment = observed.spec, observed.result, observed.deployment
    if spec is None or spec.rollout.shadow is None or report is None or report.artifact is None:
        return None
    if deployment is None or deployment.served is None or not candidate_passed(observed):
        return None
    return report.artifact.sha256


def figures_wanted(observed: Observed) -> str | None:
    """The candidate whose figures the controller should read: its pods run it and the analysis is open."""
    sha, pods, deployment = analyzed_candidate(observed), observed.candidate_pods, observed.deployment
    if sha is None or pods is None or pods.served is None or pods.served.sha256 != sha:
        return None
    if not pods.rolled_out or pods.replicas == 0 or deployment is None or deployment.served is None:
        return None
    previous = observed.previous.analysis if observed.previous else None
    decided = previous is not None and previous.candidate_sha256 == sha and previous.phase != r.ANALYZING
    return None if decided or sha == deployment.served.sha256 else sha


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _with_figures(status: AnalysisStatus, figures: Figures, higher_is_better: bool) -> AnalysisStatus:
    """The figures of the metric's kind: agreement for classes, mean absolute difference for values."""
    ms = 1000.0
    return _update(
        status,
        requests=int(figures.total),
        errors=int(figures.errors),
        error_rate=_rounded(figures.error_rate),
        agreement=_rounded(figures.agreement) if higher_is_better else None,
        mean_absolute_difference=None if higher_is_better else _rounded(figures.mean_absolute_difference),
        serving_p95_ms=_rounded(figures.serving_p95 * ms if figures.serving_p95 is not None else None, 4),
        candidate_p95_ms=_rounded(figures.candidate_p95 * ms if figures.candidate_p95 is not None else None, 4),
        p95_latency_ratio=_rounded(figures.latency_ratio, 3),
        pods=figures.pods,
    )


def _update(status: AnalysisStatus, **fields: object) -> AnalysisStatus:
    return status.model_copy(update=fields)


def _opened(sha: str, now: str, steps: tuple[int, ...]) -> AnalysisStatus:
    status = AnalysisStatus(candidate_sha256=sha, phase=r.ANALYZING, started_at=now)
    if steps:
        status = _update(status, step=1, steps=len(steps), step_started_at=now, step_start_requests=0)
    return status


def analyze(observed: Observed, now: str) -> AnalysisStatus | None:
    """The analysis status after this look; None when no analysis concerns the current spec."""
    spec, sha = observed.spec, analyzed_candidate(observed)
    previous = observed.previous.analysis if observed.previous else None
    same = previous if previous is not None and sha is not None and previous.candidate_sha256 == sha else None
    if spec is None or sha is None:
        return None
    assert observed.deployment is not None and observed.deployment.served is not None
    if same is not None and same.phase != r.ANALYZING and reopened_analysis(observed) is None:
        return same  # decided: kept, with the figures it was decided on
    if observed.deployment.served.sha256 == sha:
        return None  # served already (promoted before this strategy, or the same model again)
    analysis, steps = spec.rollout.shadow, spec.rollout.canary_steps
    assert analysis is not None
    status = same or _opened(sha, now, steps)
    if status.phase == r.ANALYSIS_FAILED:  # a retry request reopens it: a new window, all figures kept
        status = _update(
            status, phase=r.ANALYZING, finished_at=None, step_started_at=now, step_start_requests=status.requests
        )
    if steps and status.step is None:  # the strategy became canary during a shadow analysis
        status = _update(status, **_opened(sha, now, steps).model_dump(include={"step", "steps", "step_started_at"}))
    figures = observed.figures
    higher = Metric(spec.evaluation.metric).higher_is_better
    before = float(status.step_start_requests or 0)
    if figures is not None:
        status = _with_figures(status, figures, higher)
        # A serving pod that restarted counts from zero again: the window starts anew there.
        before = min(before, figures.total)
    if status.step_start_requests is not None:
        status = _update(status, step_start_requests=int(before))
    prefix = ""
    if steps:
        step = min(status.step or 1, len(steps))
        _, share = canary_share(observed, steps[step - 1])
        status = _update(status, step=step, steps=len(steps), traffic_percent=share)
        prefix = f"step {step}/{len(steps)}, {share}% of the serving pods: "
    started = status.step_started_at or status.started_at
    verdict = judge(analysis, figures, elapsed_seconds(started, now), higher, before)
    if verdict.verdict == "Running":
        waiting = "" if figures is not None else "waiting for the candidate's pods; "
        return _update(status, phase=r.ANALYZING, message=prefix + waiting + verdict.message)
    if verdict.verdict == "Passed" and steps and (status.step or 1) < len(steps):
        step = (status.step or 1) + 1
        return _update(
            status,
            phase=r.ANALYZING,
            step=step,
            traffic_percent=canary_share(observed, steps[step - 1])[1],
            step_started_at=now,
            step_start_requests=int(figures.total) if figures is not None else 0,
            message=f"{prefix}held, {verdict.message}; step {step} starts",
        )
    phase = r.ANALYSIS_PASSED if verdict.verdict == "Passed" else r.ANALYSIS_FAILED
    return _update(status, phase=phase, message=prefix + verdict.message, finished_at=now)
