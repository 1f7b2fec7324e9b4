"""Status transitions of the pure reconcile: observed state in, children + status + Events out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from optimodel.reconcile import (
    AutoscalerObservation,
    DeploymentObservation,
    JobObservation,
    Observed,
    Problem,
    compute_outcome,
    desired_children,
)
from optimodel.reconcile import reasons as r
from optimodel.reconcile.conditions import find
from optimodel.reconcile.observed import PodWaiting
from optimodel.report import ArtifactInfo, Metrics, Report, SourceInfo
from optimodel.resources import Owner, PodDefaults, ServedArtifact
from optimodel.spec import parse_spec

OWNER = Owner(name="digits", namespace="ml", uid="uid-1")
DEFAULTS = PodDefaults(job_image="optimodel:0.1.0", serve_image="optimodel:0.1.0")
RECIPE = "12" * 32
T0, T1 = "2026-11-29T10:00:00Z", "2026-11-29T10:05:00Z"


def spec(**gates: Any) -> Any:
    return parse_spec(
        {
            "source": {"uri": "s3://models/digits/1/model.keras"},
            "evaluation": {"data": "s3://datasets/digits/test.npz"},
            "gates": gates or {"maxSizeRatio": 0.3, "maxMetricDrop": 0.01},
            "artifacts": {"uri": "s3://artifacts/digits/"},
            "serving": {"replicas": 2},
        }
    )


def report(sha: str = "aa", drop: float = 0.0, ratio: float = 0.25) -> Report:
    return Report(
        key=sha * 32,
        source=SourceInfo(uri="s3://models/digits/1/model.keras", size_bytes=1000, sha256="00" * 32),
        artifact=ArtifactInfo(
            uri=f"s3://artifacts/digits/{sha * 32}/model.tflite",
            size_bytes=int(1000 * ratio),
            gzip_bytes=200,
            sha256=sha * 32,
        ),
        method="quantize",
        quantization="dynamic",
        metrics=Metrics(
            metric="accuracy",
            baseline=0.99,
            optimized=0.99 - drop,
            drop=drop,
            size_ratio=ratio,
            latency_p50_ms=0.1,
            latency_p95_ms=0.2,
        ),
        passed=True,
    )


def served(sha: str) -> ServedArtifact:
    return ServedArtifact(key=sha * 32, uri=f"s3://artifacts/digits/{sha * 32}/model.tflite", sha256=sha * 32)


def deployment(sha: str, ready: int = 2, generation: int = 1) -> DeploymentObservation:
    return DeploymentObservation(
        name="digits-serving",
        generation=generation,
        observed_generation=generation,
        replicas=2,
        updated_replicas=ready,
        ready_replicas=ready,
        available_replicas=ready,
        served=served(sha),
    )


def observed(**kwargs: Any) -> Observed:
    base: dict[str, Any] = {"owner": OWNER, "generation": 1, "spec": spec(), "recipe_key": RECIPE}
    base.update(kwargs)
    return Observed(**base)


def conditions(outcome: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in outcome.status.conditions}


def test_no_result_creates_the_job_and_says_optimizing() -> None:
    state = observed()
    desired = desired_children(state, DEFAULTS)
    assert desired.job is not None and desired.job["metadata"]["name"] == "digits-1212121212"
    assert desired.deployment is None
    outcome = compute_outcome(replace(state, job=JobObservation(name="digits-1212121212", active=1)), T0)
    assert outcome.status.phase == r.OPTIMIZING
    assert conditions(outcome)[r.READY] == ("False", r.JOB_RUNNING)
    assert conditions(outcome)[r.RECONCILING] == ("True", r.PROGRESSING)
    assert conditions(outcome)[r.GATES_PASSED] == ("Unknown", r.AWAITING_RESULT)


def test_running_job_is_not_created_twice() -> None:
    state = observed(job=JobObservation(name="digits-1212121212", active=1))
    assert desired_children(state, DEFAULTS).job is None


def test_passed_result_rolls_out_then_is_ready() -> None:
    state = observed(result=report("aa"), report_uri="s3://r")
    desired = desired_children(state, DEFAULTS)
    assert desired.job is None and desired.rollout and desired.served == served("aa")
    rolling = compute_outcome(replace(state, deployment=deployment("aa", ready=0)), T0)
    assert rolling.status.phase == r.ROLLING_OUT
    assert conditions(rolling)[r.GATES_PASSED] == ("True", r.GATES_PASSED_REASON)
    ready = compute_outcome(replace(state, deployment=deployment("aa"), previous=rolling.status), T1)
    assert ready.status.phase == r.READY_PHASE
    assert conditions(ready)[r.READY] == ("True", r.AVAILABLE)
    assert conditions(ready)[r.STALLED] == ("False", r.RECONCILED)
    assert ready.status.serving is not None and ready.status.serving.ready == "2/2"
    assert ready.status.serving.url == f"http://digits-serving.{state.owner.namespace}.svc:8501"
    assert ready.status.gates_summary == "2/2"
    assert [e.reason for e in ready.events] == [r.AVAILABLE]
    gates = find(ready.status.conditions, r.GATES_PASSED)
    assert gates is not None and gates.last_transition_time == T0  # unchanged status keeps its time


def test_quiet_resync_emits_nothing_and_keeps_times() -> None:
    state = observed(result=report("aa"), report_uri="s3://r", deployment=deployment("aa"))
    first = compute_outcome(state, T0)
    again = compute_outcome(replace(state, previous=first.status), T1)
    assert again.events == []
    assert again.status == first.status


def test_failed_gate_keeps_serving_the_last_passed_model() -> None:
    state = observed(
        spec=spec(maxMetricDrop=0.001),
        result=report("bb", drop=0.02),
        report_uri="s3://r",
        deployment=deployment("aa"),
    )
    desired = desired_children(state, DEFAULTS)
    assert desired.served == served("aa") and not desired.rollout
    annotations = desired.deployment["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    assert annotations["optimodel.io/artifact-sha256"] == "aa" * 32
    outcome = compute_outcome(state, T0)
    assert outcome.status.phase == r.GATES_FAILED
    status, reason = conditions(outcome)[r.GATES_PASSED]
    assert (status, reason) == ("False", r.GATES_FAILED_REASON)
    message = find(outcome.status.conditions, r.GATES_PASSED).message  # type: ignore[union-attr]
    assert "maxMetricDrop: actual 0.02 vs threshold 0.001" in message
    assert "serving sha256:aaaaaaaaaaaa" in outcome.status.message
    assert conditions(outcome)[r.STALLED] == ("True", r.GATES_FAILED_REASON)
    assert any(e.type == "Warning" and e.reason == r.GATES_FAILED_REASON for e in outcome.events)
    assert outcome.retry_after is None  # a failed gate is a result: no retry loop


def test_tightened_gate_is_judged_on_stored_metrics_without_a_job() -> None:
    state = observed(
        spec=spec(maxSizeRatio=0.1), result=report("aa"), report_uri="s3://r", deployment=deployment("aa")
    )
    assert desired_children(state, DEFAULTS).job is None
    outcome = compute_outcome(state, T0)
    assert [(g.name, g.passed) for g in outcome.status.gates] == [("maxSizeRatio", False)]
    assert outcome.status.candidate is not None and outcome.status.candidate.passed is False


def test_new_passing_model_rolls_and_ready_waits_for_it() -> None:
    state = observed(result=report("cc"), report_uri="s3://r", deployment=deployment("aa"))
    desired = desired_children(state, DEFAULTS)
    assert desired.rollout and desired.served == served("cc")
    outcome = compute_outcome(state, T0)
    assert conditions(outcome)[r.READY] == ("False", r.ROLLOUT_STARTED)


def test_serving_only_change_needs_no_job() -> None:
    state = observed(
        spec=parse_spec({**spec().to_wire(), "serving": {"replicas": 5}}),
        result=report("aa"),
        report_uri="s3://r",
        deployment=deployment("aa"),
    )
    desired = desired_children(state, DEFAULTS)
    assert desired.job is None and desired.deployment["spec"]["replicas"] == 5  # type: ignore[index]


def test_job_failure_is_stalled_with_the_reason_from_the_pod() -> None:
    job = JobObservation(
        name="digits-1212121212",
        failed=1,
        finished="Failed",
        condition_reason="PodFailurePolicy",
        termination={"error": "evaluation.data s3://datasets/x.npz has no array y", "reason": "InvalidInput"},
    )
    outcome = compute_outcome(observed(job=job), T0)
    assert outcome.status.phase == r.FAILED
    assert conditions(outcome)[r.STALLED] == ("True", r.JOB_FAILED)
    assert "InvalidInput" in outcome.status.message and "has no array y" in outcome.status.message
    assert desired_children(observed(job=job), DEFAULTS).job is None  # never recreated in a loop


def test_missing_source_and_storage_outage() -> None:
    missing = compute_outcome(
        observed(problem=Problem(r.SOURCE_NOT_FOUND, "s3://m does not exist", False)), T0
    )
    assert missing.status.phase == r.FAILED and conditions(missing)[r.STALLED][0] == "True"
    assert missing.retry_after is None
    outage = compute_outcome(observed(problem=Problem(r.STORAGE_UNAVAILABLE, "cannot reach", True)), T0)
    assert outage.status.phase == r.PENDING and outage.retry_after
    assert conditions(outage)[r.RECONCILING] == ("True", r.PROGRESSING)
    assert desired_children(observed(problem=Problem(r.STORAGE_UNAVAILABLE, "x", True)), DEFAULTS).job is None


def test_invalid_spec_is_permanent_and_touches_nothing() -> None:
    state = observed(spec=None, problem=Problem(r.INVALID_SPEC, "spec.gates.maxSizeBytes: bad", False))
    assert desired_children(state, DEFAULTS).deployment is None
    outcome = compute_outcome(state, T0)
    assert outcome.permanent and outcome.status.phase == r.FAILED


def test_observed_generation_on_status_and_conditions() -> None:
    outcome = compute_outcome(observed(generation=7, result=report("aa"), report_uri="s3://r"), T0)
    assert outcome.status.observed_generation == 7
    assert {c.observed_generation for c in outcome.status.conditions} == {7}


# Autoscaling: the HorizontalPodAutoscaler goes with the Deployment, which then carries no count.
AUTOSCALING = {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}, "resources": {"requests": {"cpu": "1"}}}
OURS = AutoscalerObservation(name="digits-serving", uid="hpa-1", controller_uid=OWNER.uid, min_replicas=2,
                             max_replicas=4, target_cpu_utilization=70)


def autoscaled(**serving: Any) -> Any:
    return parse_spec({**spec().to_wire(), "serving": {**AUTOSCALING, **serving}})


def test_autoscaling_applies_an_autoscaler_and_no_replica_count() -> None:
    state = observed(spec=autoscaled(), result=report("aa"), report_uri="s3://r")
    desired = desired_children(state, DEFAULTS)
    assert desired.deployment is not None and "replicas" not in desired.deployment["spec"]
    assert desired.autoscaler is not None and desired.autoscaler["spec"]["maxReplicas"] == 4
    assert desired.autoscaler["metadata"]["name"] == desired.deployment["metadata"]["name"]
    assert desired.replicas_handover is None and desired.stale_autoscaler is None  # a new Deployment


def test_no_autoscaler_before_anything_is_served() -> None:
    desired = desired_children(observed(spec=autoscaled()), DEFAULTS)
    assert desired.job is not None and desired.deployment is None and desired.autoscaler is None


@pytest.mark.parametrize(("replicas", "kept"), [(3, 3), (9, 4), (1, 2), (0, 2)])
def test_a_fixed_count_is_handed_over_within_the_bounds(replicas: int, kept: int) -> None:
    fixed = replace(deployment("aa"), replicas=replicas, owns_replicas=True)
    state = observed(spec=autoscaled(), result=report("aa"), report_uri="s3://r", deployment=fixed)
    handover = desired_children(state, DEFAULTS).replicas_handover
    assert handover is not None and handover["spec"] == {"replicas": kept}
    assert handover["metadata"] == {"name": "digits-serving", "namespace": "ml"}


def test_once_handed_over_the_count_is_left_to_the_autoscaler() -> None:
    scaled = replace(deployment("aa"), replicas=3)  # set by the autoscaler (another field manager)
    state = observed(spec=autoscaled(), result=report("aa"), report_uri="s3://r", deployment=scaled, autoscaler=OURS)
    desired = desired_children(state, DEFAULTS)
    assert desired.replicas_handover is None and desired.stale_autoscaler is None
    assert desired.deployment is not None and "replicas" not in desired.deployment["spec"]


def test_removing_autoscaling_deletes_our_autoscaler_and_applies_the_count_again() -> None:
    state = observed(result=report("aa"), report_uri="s3://r", deployment=deployment("aa"), autoscaler=OURS)
    desired = desired_children(state, DEFAULTS)
    assert desired.stale_autoscaler == OURS and desired.autoscaler is None
    assert desired.deployment is not None and desired.deployment["spec"]["replicas"] == 2
    # Also when nothing is served (yet): an autoscaler of ours has nothing to scale.
    assert desired_children(observed(autoscaler=OURS), DEFAULTS).stale_autoscaler == OURS


@pytest.mark.parametrize("controller", [None, "someone-else"])
def test_an_autoscaler_we_do_not_control_is_never_deleted(controller: str | None) -> None:
    theirs = replace(OURS, controller_uid=controller)
    state = observed(result=report("aa"), report_uri="s3://r", deployment=deployment("aa"), autoscaler=theirs)
    assert desired_children(state, DEFAULTS).stale_autoscaler is None
    assert compute_outcome(state, T0).status.serving.autoscaler is None  # type: ignore[union-attr]


def test_an_invalid_spec_deletes_nothing() -> None:
    state = observed(spec=None, problem=Problem(r.INVALID_SPEC, "bad", False), autoscaler=OURS)
    assert desired_children(state, DEFAULTS).stale_autoscaler is None


def test_status_shows_the_autoscaler_and_ready_follows_its_count() -> None:
    scaled = replace(deployment("aa"), replicas=3, updated_replicas=3, ready_replicas=3, available_replicas=3)
    state = observed(spec=autoscaled(), result=report("aa"), report_uri="s3://r", deployment=scaled, autoscaler=OURS)
    ready = compute_outcome(state, T0)
    assert conditions(ready)[r.READY] == ("True", r.AVAILABLE)
    serving = ready.status.serving
    assert serving is not None and serving.ready == "3/3" and serving.autoscaler is not None
    assert serving.to_wire()["autoscaler"] == {
        "name": "digits-serving", "minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}
    # The autoscaler asks for a fourth pod: not Ready until it is available, as for any rollout.
    growing = replace(scaled, replicas=4, updated_replicas=4)
    assert conditions(compute_outcome(replace(state, deployment=growing), T0))[r.READY] == (
        "False", r.ROLLOUT_IN_PROGRESS)


def test_an_oom_killed_job_says_to_raise_its_memory_limit() -> None:
    job = JobObservation(
        name="digits-1212121212",
        failed=1,
        finished="Failed",
        condition_reason="BackoffLimitExceeded",
        termination={"error": "out of memory at its memory limit of 64Mi", "reason": "OOMKilled"},
    )
    outcome = compute_outcome(observed(job=job), T0)
    assert conditions(outcome)[r.STALLED] == ("True", r.JOB_OUT_OF_MEMORY)
    assert "OOMKilled" in outcome.status.message and "64Mi" in outcome.status.message
    assert "raise spec.job.resources.limits.memory" in outcome.status.message
    assert ("Warning", r.JOB_OUT_OF_MEMORY) in {(e.type, e.reason) for e in outcome.events}


def test_a_job_whose_image_is_missing_is_stalled_and_looked_at_again() -> None:
    waiting = PodWaiting("digits-1212121212-x7", "ErrImageNeverPull", "image not present with pull policy of Never",
                         "localhost/optimodel-optimizer:gone")  # fmt: skip
    job = JobObservation(name="digits-1212121212", active=1, waiting=waiting)
    outcome = compute_outcome(observed(job=job), T0)
    assert outcome.status.phase == r.FAILED
    assert conditions(outcome)[r.STALLED] == ("True", r.JOB_CANNOT_START)
    assert conditions(outcome)[r.RECONCILING][0] == "False"
    assert "image localhost/optimodel-optimizer:gone is not present on the node" in outcome.status.message
    assert outcome.retry_after is not None  # the image may be imported: look again
    assert desired_children(observed(job=job), DEFAULTS).job is None


def test_a_rollout_whose_pods_cannot_start_keeps_the_previous_model_serving() -> None:
    state = observed(result=report("bb"), report_uri="s3://r")
    waiting = PodWaiting("digits-serving-abc", "ImagePullBackOff", "Back-off pulling image", "localhost/serve:gone")
    stuck = replace(deployment("bb", ready=0), available_replicas=2, waiting=waiting)
    outcome = compute_outcome(replace(state, deployment=stuck), T0)
    assert conditions(outcome)[r.READY] == ("False", r.ROLLOUT_CANNOT_START)
    assert conditions(outcome)[r.STALLED] == ("True", r.ROLLOUT_CANNOT_START)
    assert "image localhost/serve:gone is not present" in outcome.status.message
    assert "previous model keep serving" in outcome.status.message


def test_a_rollout_with_an_old_pod_left_is_not_finished() -> None:
    state = observed(result=report("aa"), report_uri="s3://r")
    leftover = replace(deployment("aa"), total_replicas=3)  # 2 updated and available, 1 old pod still there
    outcome = compute_outcome(replace(state, deployment=leftover), T0)
    assert conditions(outcome)[r.READY] == ("False", r.ROLLOUT_IN_PROGRESS)
    finished = compute_outcome(replace(state, deployment=replace(leftover, total_replicas=2)), T0)
    assert conditions(finished)[r.READY] == ("True", r.AVAILABLE)
