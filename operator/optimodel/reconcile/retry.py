"""Retrying a failed Job on request, without changing the spec. Pure layer.

The user asks by setting the annotation `optimodel.io/retry-requested-at` to a new value (any
string, typically a timestamp; Flux's `reconcile.fluxcd.io/requestedAt` works the same way).
The operator handles each value once and records it in `status.lastHandledRetryAt`:

- when the current Job of the recipe failed, the next attempt of the same recipe starts in a new
  Job (`<name>-<hex>-<attempt>`, see `resources.job_name`); the failed Job stays for its logs until
  its TTL or its owner removes it;
- when the analysis of the current candidate on live traffic failed (strategies shadow and
  canary), it reopens: the candidate's pods start again and the verdict waits for `minRequests`
  more mirrored requests within `maxSeconds` (a canary at the step it failed at), judged on all its
  figures (`reconcile.progressive`);
- otherwise (a Job running, a result stored, nothing run yet, a spec that cannot run) the value is
  recorded and ignored: a good run is never restarted and a stored result never recomputed.

A failed Job is remembered in `status.failedJob` (see `remember_failure`): when its TTL deletes it,
the recipe still counts as failed, so the same bad input does not run again every TTL; a retry
request or a new recipe is still what starts the next Job.

A request is left pending while the operator cannot see what happened (storage unreachable,
credentials missing): it is handled on the reconcile that can. One value starts at most one Job:
the Job carries the value it answers, so even a status write lost in a crash starts nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from optimodel.reconcile import reasons as r
from optimodel.reconcile.event import Event
from optimodel.reconcile.observed import JobObservation, Observed
from optimodel.reconcile.status import FailedJob
from optimodel.resources import RETRY_ANNOTATION, Owner

TOKEN_SHOWN = 64  # a token is any string: Events show its beginning


@dataclass(frozen=True)
class Retry:
    """What the operator does about one retry request (a new annotation value)."""

    token: str
    failed: str | None = None  # the failed Job that a new attempt replaces
    attempt: int = 0  # the new attempt's number when one starts
    ignored: str = ""  # why nothing is retried
    answered: bool = False  # a Job already answers it: only the status write was missing
    reopened: str | None = None  # the candidate whose failed analysis opens again

    def event(self, job: str | None) -> Event | None:
        """The Event that tells the user what became of the request; `job` is the new attempt's Job."""
        if self.answered:
            return None  # told when that Job was created
        request = f"{RETRY_ANNOTATION}={self.token[:TOKEN_SHOWN]}"
        if self.reopened is not None:
            return Event(
                "Normal", r.RETRY_REQUESTED, f"{request}: the failed analysis of sha256:{self.reopened[:12]} reopens"
            )
        if self.failed is not None:
            return Event("Normal", r.RETRY_REQUESTED, f"{request}: Job {job} replaces the failed Job {self.failed}")
        return Event("Normal", r.RETRY_IGNORED, f"{request} recorded, nothing retried: {self.ignored}")


def failure_record(observed: Observed) -> FailedJob | None:
    """What `status.failedJob` records after this reconcile: the current recipe's failed Job, if any."""
    job = observed.job
    if observed.result is not None or job is None or job.finished != "Failed" or job.recipe_key is None:
        return None
    term = job.termination or {}
    return FailedJob(
        recipe_key=job.recipe_key,
        job=job.name,
        attempt=job.attempt,
        reason=str(term.get("reason") or job.condition_reason),
        error=str(term.get("error") or job.condition_message),
    )


def remember_failure(observed: Observed) -> Observed:
    """The observation with the remembered failed Job standing in for a deleted one of the same recipe."""
    previous = observed.previous.failed_job if observed.previous else None
    if (
        previous is None
        or observed.job is not None
        or observed.result is not None
        or observed.recipe_key != previous.recipe_key
    ):
        return observed
    job = JobObservation(
        name=previous.job,
        recipe_key=previous.recipe_key,
        attempt=previous.attempt,
        failed=1,
        finished="Failed",
        condition_reason=previous.reason,
        termination={"error": previous.error, "reason": previous.reason} if previous.error else None,
    )
    return replace(observed, job=job)


def retry_pending(requested: str | None, handled: str | None) -> bool:
    """A retry request the operator has not handled yet (the annotation and the status differ)."""
    return requested is not None and requested != handled


def retry_command(owner: Owner) -> str:
    """The command that asks for a retry, as status messages and docs show it."""
    return (
        f'kubectl -n {owner.namespace} annotate om {owner.name} {RETRY_ANNOTATION}="$(date +%s)" --overwrite'
    )


def current_job(jobs: Iterable[JobObservation], recipe_key: str | None) -> JobObservation | None:
    """The latest attempt among the Jobs of the recipe: the one status reports on."""
    mine = [job for job in jobs if recipe_key is not None and job.recipe_key == recipe_key]
    return max(mine, key=lambda job: (job.attempt, job.name), default=None)


def _last_handled(observed: Observed) -> str | None:
    return observed.previous.last_handled_retry_at if observed.previous else None


def _deferred(observed: Observed) -> bool:
    """The operator cannot see the Job or the stored result yet (a problem that may clear by itself)."""
    return observed.problem is not None and observed.problem.retry


def _request(observed: Observed) -> str | None:
    """The request to handle in this reconcile, if any."""
    requested = observed.retry_requested
    if not retry_pending(requested, _last_handled(observed)) or _deferred(observed):
        return None
    return requested


def handled_retry(observed: Observed) -> str | None:
    """The value `status.lastHandledRetryAt` records after this reconcile."""
    request = _request(observed)
    return request if request is not None else _last_handled(observed)


def reopened_analysis(observed: Observed) -> str | None:
    """The candidate whose failed analysis a new retry request reopens, if any."""
    report = observed.result
    previous = observed.previous.analysis if observed.previous else None
    if _request(observed) is None or report is None or report.artifact is None or previous is None:
        return None
    failed = previous.phase == r.ANALYSIS_FAILED and previous.candidate_sha256 == report.artifact.sha256
    return previous.candidate_sha256 if failed else None


def _nothing_to_retry(observed: Observed, job: JobObservation | None) -> str:
    """Why a request finds nothing to retry; empty when the current Job failed."""
    if observed.problem is not None:
        return f"no Job can run ({observed.problem.reason}: {observed.problem.message})"
    if observed.result is not None:
        return (
            f"result {observed.result.key[:12]} is stored for the current recipe "
            "(stored results are reused, never recomputed)"
        )
    if job is None:
        return "no Job of the current recipe has run yet; the first one starts now"
    if job.finished is None:
        return f"Job {job.name} is still running"
    if job.finished != "Failed":
        return f"Job {job.name} completed"
    return ""


def decide_retry(observed: Observed) -> Retry | None:
    """The answer to a new retry request; None when there is none to handle now."""
    token = _request(observed)
    if token is None:
        return None
    job = observed.job
    if job is not None and job.retry_token == token:
        return Retry(token, answered=True)
    reopened = reopened_analysis(observed)
    if reopened is not None:
        return Retry(token, reopened=reopened)
    why = _nothing_to_retry(observed, job)
    if why or job is None:
        return Retry(token, ignored=why)
    return Retry(token, failed=job.name, attempt=job.attempt + 1)
