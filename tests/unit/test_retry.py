"""Retry requests (`optimodel.io/retry-requested-at`): the pure decision, the Job it builds, the status it records."""

from __future__ import annotations

from dataclasses import replace

from optimodel.reconcile import (
    JobObservation,
    Observed,
    OptimizedModelStatus,
    Problem,
    Retry,
    compute_outcome,
    current_job,
    desired_children,
    remember_failure,
    retry_pending,
)
from optimodel.reconcile import reasons as r
from optimodel.reconcile.requeue import requeue_delay
from optimodel.resources import Owner, build_job, job_name
from tests.unit.test_reconcile import DEFAULTS, OWNER, RECIPE, T0, T1, conditions, deployment, observed, report

FAILED = JobObservation(
    name="digits-1212121212",
    recipe_key=RECIPE,
    failed=1,
    finished="Failed",
    condition_reason="PodFailurePolicy",
    termination={"error": "calibrationData s3://datasets/c.npz does not exist", "reason": "ObjectNotFound"},
)
RUNNING = JobObservation(name="digits-1212121212", recipe_key=RECIPE, active=1)


def handled(value: str | None) -> OptimizedModelStatus:
    """A previous status that recorded `value` as the last handled request."""
    return OptimizedModelStatus(phase=r.FAILED, last_handled_retry_at=value)


def ignored(retry: Retry | None) -> str:
    """The message of the RetryIgnored Event a request got."""
    event = retry.event(None) if retry is not None else None
    assert event is not None and (event.type, event.reason) == ("Normal", r.RETRY_IGNORED)
    return event.message


def test_a_new_request_replaces_the_failed_job_with_the_next_attempt() -> None:
    state = observed(job=FAILED, retry_requested="1700000000", previous=handled(None))
    desired = desired_children(state, DEFAULTS)

    assert desired.job is not None and desired.retry is not None
    meta = desired.job["metadata"]
    assert meta["name"] == "digits-1212121212-2"
    assert meta["annotations"] == {
        "optimodel.io/recipe-key": RECIPE,
        "optimodel.io/attempt": "2",
        "optimodel.io/retry-requested-at": "1700000000",
    }
    assert meta["ownerReferences"][0]["uid"] == OWNER.uid  # garbage-collected with the resource, like the first
    event = desired.retry.event(meta["name"])
    assert event is not None and (event.type, event.reason) == ("Normal", r.RETRY_REQUESTED)
    assert "Job digits-1212121212-2 replaces the failed Job digits-1212121212" in event.message

    # What the reconciler reports after creating it: running again, the request recorded.
    outcome = compute_outcome(replace(state, job=JobObservation(name=meta["name"])), T0)
    assert outcome.status.last_handled_retry_at == "1700000000"
    assert outcome.status.phase == r.OPTIMIZING and outcome.status.job_name == "digits-1212121212-2"
    assert conditions(outcome)[r.RECONCILING] == ("True", r.PROGRESSING)
    assert conditions(outcome)[r.STALLED] == ("False", r.RECONCILED)
    assert conditions(outcome)[r.OPTIMIZED] == ("False", r.JOB_RUNNING)


def test_an_empty_value_is_a_request_like_any_other() -> None:
    state = observed(job=FAILED, retry_requested="", previous=handled(None))
    assert desired_children(state, DEFAULTS).job is not None
    assert compute_outcome(state, T0).status.last_handled_retry_at == ""


def test_a_handled_request_starts_nothing() -> None:
    state = observed(job=FAILED, retry_requested="1700000000", previous=handled("1700000000"))
    desired = desired_children(state, DEFAULTS)
    assert desired.job is None and desired.retry is None
    outcome = compute_outcome(state, T0)
    assert outcome.status.last_handled_retry_at == "1700000000"
    assert conditions(outcome)[r.STALLED] == ("True", r.JOB_FAILED)


def test_a_removed_annotation_keeps_the_last_handled_value() -> None:
    state = observed(job=FAILED, retry_requested=None, previous=handled("1700000000"))
    assert desired_children(state, DEFAULTS).retry is None
    assert compute_outcome(state, T0).status.last_handled_retry_at == "1700000000"


def test_a_request_while_the_job_runs_is_recorded_and_ignored() -> None:
    state = observed(job=RUNNING, retry_requested="a", previous=handled(None))
    desired = desired_children(state, DEFAULTS)
    assert desired.job is None and desired.retry is not None and desired.retry.failed is None
    assert "Job digits-1212121212 is still running" in ignored(desired.retry)
    assert compute_outcome(state, T0).status.last_handled_retry_at == "a"
    # The run then fails: the earlier request does not retry it.
    later = observed(job=FAILED, retry_requested="a", previous=handled("a"))
    assert desired_children(later, DEFAULTS).job is None


def test_a_request_after_success_never_recomputes_the_stored_result() -> None:
    done = replace(RUNNING, active=0, succeeded=1, finished="Complete")
    state = observed(
        job=done,
        result=report("aa"),
        report_uri="s3://r",
        deployment=deployment("aa"),
        retry_requested="b",
        previous=handled("a"),
    )
    desired = desired_children(state, DEFAULTS)
    assert desired.job is None and desired.retry is not None
    assert "is stored for the current recipe" in ignored(desired.retry)
    outcome = compute_outcome(state, T0)
    assert outcome.status.last_handled_retry_at == "b" and outcome.status.phase == r.READY_PHASE


def test_a_request_before_any_job_lets_the_first_one_start() -> None:
    state = observed(retry_requested="a")
    desired = desired_children(state, DEFAULTS)
    assert desired.job is not None and desired.job["metadata"]["name"] == "digits-1212121212"
    assert desired.retry is not None and desired.retry.failed is None
    assert "the first one starts now" in ignored(desired.retry)


def test_a_failed_retry_can_be_retried_again() -> None:
    second = replace(FAILED, name="digits-1212121212-2", attempt=2, retry_token="a")
    state = observed(job=second, retry_requested="b", previous=handled("a"))
    desired = desired_children(state, DEFAULTS)
    assert desired.job is not None and desired.job["metadata"]["name"] == "digits-1212121212-3"


def test_a_request_whose_job_exists_starts_no_second_one() -> None:
    """The status write after the retry was lost (operator crash): the Job says whom it answers."""
    answered = replace(FAILED, name="digits-1212121212-2", attempt=2, retry_token="a")
    state = observed(job=answered, retry_requested="a", previous=handled(None))
    desired = desired_children(state, DEFAULTS)
    assert desired.job is None and desired.retry is not None and desired.retry.failed is None
    assert desired.retry.event(None) is None  # RetryRequested was posted when that Job was created
    assert compute_outcome(state, T0).status.last_handled_retry_at == "a"


def test_a_request_waits_while_storage_is_unreachable() -> None:
    """The operator cannot see the Job or the result: the request stays pending, not dropped."""
    state = observed(
        recipe_key=None,
        problem=Problem(r.STORAGE_UNAVAILABLE, "cannot reach", True),
        retry_requested="a",
        previous=handled(None),
    )
    assert desired_children(state, DEFAULTS).retry is None
    assert compute_outcome(state, T0).status.last_handled_retry_at is None


def test_a_request_on_a_spec_that_cannot_run_is_recorded_and_ignored() -> None:
    state = observed(
        recipe_key=None, problem=Problem(r.SOURCE_NOT_FOUND, "s3://m does not exist", False), retry_requested="a"
    )
    desired = desired_children(state, DEFAULTS)
    assert desired.job is None and desired.retry is not None
    assert "SourceNotFound" in ignored(desired.retry)
    invalid = observed(spec=None, problem=Problem(r.INVALID_SPEC, "bad", False), retry_requested="a")
    assert desired_children(invalid, DEFAULTS).retry is not None
    assert compute_outcome(invalid, T0).status.last_handled_retry_at == "a"


def test_job_failure_messages_tell_how_to_retry() -> None:
    command = 'kubectl -n ml annotate om digits optimodel.io/retry-requested-at="$(date +%s)" --overwrite'
    failed = compute_outcome(observed(job=FAILED), T0)
    message = dict((c.type, c.message) for c in failed.status.conditions)[r.STALLED]
    assert message.endswith(f"fix the input, then retry: {command}") and "delete" not in message
    outage = replace(FAILED, termination={"reason": "StorageUnavailable", "error": "cannot reach the S3 endpoint"})
    unreachable = compute_outcome(observed(job=outage), T0).status.message
    assert unreachable.endswith(f"once the store answers again, retry: {command}")
    assert "fix the input" not in unreachable
    deadline = replace(FAILED, condition_reason="DeadlineExceeded", termination=None)
    late = compute_outcome(observed(job=deadline), T1)
    assert conditions(late)[r.STALLED] == ("True", r.JOB_DEADLINE_EXCEEDED)
    assert "raise it if the run needs longer, then retry: " + command in late.status.message


def test_the_current_job_is_the_latest_attempt_of_the_recipe() -> None:
    first = replace(FAILED, attempt=1)
    second = replace(FAILED, name="digits-1212121212-2", attempt=2)
    tenth = replace(FAILED, name="digits-1212121212-10", attempt=10)
    other_recipe = replace(RUNNING, name="digits-3434343434", recipe_key="34" * 32, attempt=50)
    assert current_job([second, first, other_recipe], RECIPE) == second
    assert current_job([second, tenth, first], RECIPE) == tenth  # by number, not by name
    assert current_job([other_recipe], RECIPE) is None
    assert current_job([first], None) is None


def test_pending_is_a_value_that_differs_from_the_handled_one() -> None:
    assert retry_pending("1", None) and retry_pending("2", "1")
    assert not retry_pending("1", "1") and not retry_pending(None, "1") and not retry_pending(None, None)


def test_retry_job_names_stay_dns_labels() -> None:
    longest = Owner(name="m" * 45, namespace="ml", uid="u")  # the CRD's longest name
    name = job_name(longest, RECIPE, attempt=999_999)
    assert len(name) == 63 and name.endswith("-1212121212-999999")
    assert job_name(OWNER, RECIPE, attempt=1) == job_name(OWNER, RECIPE) == "digits-1212121212"
    spec = observed().spec
    assert spec is not None
    again = build_job(spec, OWNER, RECIPE, DEFAULTS, attempt=2, retry_token="x")
    assert again == build_job(spec, OWNER, RECIPE, DEFAULTS, attempt=2, retry_token="x")  # deterministic
    first = build_job(spec, OWNER, RECIPE, DEFAULTS)
    assert again["spec"] == first["spec"]  # the same recipe, run again


def after_ttl(failed_status: OptimizedModelStatus, **kwargs: object) -> Observed:
    """The next reconcile once the failed Job was deleted by its TTL: no Job, the status it left."""
    return remember_failure(observed(job=None, previous=failed_status, **kwargs))


def failed_status() -> OptimizedModelStatus:
    return compute_outcome(observed(job=FAILED), T0).status


def test_a_failed_job_is_recorded_in_status() -> None:
    record = failed_status().failed_job
    assert record is not None
    assert (record.recipe_key, record.job, record.attempt) == (RECIPE, FAILED.name, 1)
    assert record.reason == "ObjectNotFound" and "does not exist" in record.error


def test_a_failed_job_deleted_by_its_ttl_is_not_run_again() -> None:
    state = after_ttl(failed_status())
    assert desired_children(state, DEFAULTS).job is None
    outcome = compute_outcome(state, T1)
    assert outcome.status.phase == r.FAILED
    assert conditions(outcome)[r.STALLED] == ("True", r.JOB_FAILED)
    assert "does not exist" in outcome.status.message
    assert outcome.status.failed_job == failed_status().failed_job  # kept for the reconciles after
    assert outcome.events == []  # nothing new to tell


def test_a_retry_after_the_ttl_runs_the_next_attempt() -> None:
    state = after_ttl(failed_status(), retry_requested="1700000001")
    desired = desired_children(state, DEFAULTS)
    assert desired.job is not None and desired.job["metadata"]["name"] == "digits-1212121212-2"


def test_a_new_recipe_forgets_the_failure() -> None:
    state = after_ttl(failed_status(), recipe_key="34" * 32)
    job = desired_children(state, DEFAULTS).job
    assert job is not None and job["metadata"]["annotations"]["optimodel.io/recipe-key"] == "34" * 32
    assert compute_outcome(replace(state, job=None), T1).status.failed_job is None


def test_requeue_backs_off_exponentially_with_jitter_up_to_a_cap() -> None:
    ceilings = [requeue_delay(30, failures, 0.0) for failures in range(1, 9)]
    assert ceilings == [30, 60, 120, 240, 480, 600, 600, 600]
    assert requeue_delay(30, 10_000, 0.0) == 600  # no overflow after days of failures
    jittered = [requeue_delay(30, 3, rand) for rand in (0.0, 0.5, 0.999)]
    assert jittered[0] == 120 and 60 < jittered[2] < jittered[1] < 120  # spread, never above the ceiling
    assert requeue_delay(30, 1, 0.0, cap_s=10) == 30  # a cap below the first delay does not shorten it


def test_a_repeating_cause_posts_one_event() -> None:
    """An outage seen on every retry (its message changing) is told once, not once per retry."""
    first = compute_outcome(observed(problem=Problem(r.STORAGE_UNAVAILABLE, "timeout after 5 s", True)), T0)
    assert r.STORAGE_UNAVAILABLE in [e.reason for e in first.events]
    again = compute_outcome(
        observed(problem=Problem(r.STORAGE_UNAVAILABLE, "connection refused", True), previous=first.status), T1
    )
    assert again.retry_after is not None and again.events == []
