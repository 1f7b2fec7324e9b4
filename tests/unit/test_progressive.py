"""spec.rollout and the shadow and canary analyses as pure code: spec rules, /metrics parsing, the verdict,
and what the reconcile does with it (which model serves, the candidate's pods, status, Events)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from optimodel.crd import build_crd
from optimodel.errors import SpecError
from optimodel.reconcile import (
    DeploymentObservation,
    Observed,
    ServiceObservation,
    compute_outcome,
    desired_children,
)
from optimodel.reconcile import reasons as r
from optimodel.reconcile.analysis import Figures, add_pod, judge, quantile, worker_of
from optimodel.reconcile.progressive import analyze, figures_wanted
from optimodel.resources import TRAFFIC_LABEL, Owner, PodDefaults, build_deployment, canary_replicas
from optimodel.spec import (
    ANALYSIS_NEEDS_SHADOW,
    MAX_DIFFERENCE_FOR_VALUES,
    MIN_AGREEMENT_FOR_CLASSES,
    MIN_SECONDS_BELOW_MAX,
    STEPS_INCREASING,
    STEPS_NEED_CANARY,
    Analysis,
    parse_spec,
)
from tests.unit.test_reconcile import deployment, report, served

OWNER = Owner(name="digits", namespace="ml", uid="uid-1")
DEFAULTS = PodDefaults(job_image="optimodel:0.1.0", serve_image="optimodel:0.1.0")
T0, T1, T_LATE = "2026-11-29T10:00:00Z", "2026-11-29T10:01:00Z", "2026-11-29T11:00:00Z"
A, B = "aa" * 32, "bb" * 32


def wire(metric: str = "accuracy", rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "source": {"uri": "s3://models/digits/1/model.keras"},
        "evaluation": {"data": "s3://datasets/digits/test.npz", "metric": metric},
        "gates": {"maxSizeRatio": 0.3},
        "artifacts": {"uri": "s3://artifacts/digits/"},
        "serving": {"replicas": 2},
        **({"rollout": rollout} if rollout is not None else {}),
    }


SHADOW = {"strategy": "shadow", "analysis": {"minRequests": 100, "maxSeconds": 600, "minAgreement": 0.9}}


# spec.rollout


def test_rollout_defaults_to_replace_without_analysis() -> None:
    spec = parse_spec(wire())
    assert spec.rollout.strategy == "replace" and spec.rollout.shadow is None
    assert parse_spec(wire(rollout={"strategy": "shadow"})).rollout.shadow == Analysis()


@pytest.mark.parametrize(
    ("metric", "rollout", "message"),
    [
        ("accuracy", {"analysis": {"minRequests": 5}}, ANALYSIS_NEEDS_SHADOW),
        ("mae", {"strategy": "shadow", "analysis": {"minAgreement": 0.9}}, MIN_AGREEMENT_FOR_CLASSES),
        ("accuracy", {"strategy": "shadow", "analysis": {"maxMeanAbsoluteDifference": 1}}, MAX_DIFFERENCE_FOR_VALUES),
        ("accuracy", {"strategy": "blue-green"}, "spec.rollout.strategy"),
        ("accuracy", {"strategy": "shadow", "steps": [50]}, STEPS_NEED_CANARY),
        ("accuracy", {"strategy": "canary", "steps": [50, 20]}, STEPS_INCREASING),
        ("accuracy", {"strategy": "canary", "steps": [50, 50]}, STEPS_INCREASING),
        ("accuracy", {"strategy": "canary", "steps": [100]}, "spec.rollout.steps.0"),
        ("accuracy", {"strategy": "canary", "analysis": {"minSeconds": 600}}, MIN_SECONDS_BELOW_MAX),
        ("accuracy", {"strategy": "shadow", "analysis": {"minRequests": 0}}, "spec.rollout.analysis.minRequests"),
        ("accuracy", {"strategy": "shadow", "mirrorPercent": 101}, "spec.rollout.mirrorPercent"),
    ],
)
def test_rollout_errors_name_the_field(metric: str, rollout: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(wire(metric, rollout))


def test_crd_rules_carry_the_rollout_messages() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    texts = " ".join(rule["messageExpression"] for rule in spec["x-kubernetes-validations"])
    assert MIN_AGREEMENT_FOR_CLASSES in texts and MAX_DIFFERENCE_FOR_VALUES in texts
    rollout = spec["properties"]["rollout"]
    messages = [rule["message"] for rule in rollout["x-kubernetes-validations"]]
    assert messages == [ANALYSIS_NEEDS_SHADOW, STEPS_NEED_CANARY, STEPS_INCREASING]
    assert rollout["properties"]["strategy"]["enum"] == ["replace", "shadow", "canary"]
    assert rollout["properties"]["steps"]["x-kubernetes-list-type"] == "set"  # no repeats
    analysis_rules = rollout["properties"]["analysis"]["x-kubernetes-validations"]
    assert [rule["message"] for rule in analysis_rules] == [MIN_SECONDS_BELOW_MAX]


# /metrics text -> figures

POD = f"""# HELP optimodel_shadow_requests_total Mirrored requests
optimodel_shadow_requests_total{{candidate="{B}"}} 90.0
optimodel_shadow_requests_total{{candidate="{A}"}} 1000.0
optimodel_shadow_errors_total{{candidate="{B}"}} 10.0
optimodel_shadow_compared_total{{candidate="{B}"}} 180.0
optimodel_shadow_agreeing_total{{candidate="{B}"}} 171.0
optimodel_shadow_serving_inference_seconds_bucket{{candidate="{B}",le="0.001"}} 50.0
optimodel_shadow_serving_inference_seconds_bucket{{candidate="{B}",le="0.002"}} 90.0
optimodel_shadow_serving_inference_seconds_bucket{{candidate="{B}",le="+Inf"}} 90.0
optimodel_shadow_candidate_inference_seconds_bucket{{candidate="{B}",le="0.002"}} 10.0
optimodel_shadow_candidate_inference_seconds_bucket{{candidate="{B}",le="0.004"}} 90.0
optimodel_shadow_candidate_inference_seconds_bucket{{candidate="{B}",le="+Inf"}} 90.0
optimodel_worker{{worker="1"}} 1.0
"""


def test_figures_add_up_over_pods_for_the_candidate_only() -> None:
    figures = Figures()
    add_pod(figures, POD, B)
    add_pod(figures, POD, B)
    assert (figures.pods, figures.requests, figures.errors) == (2, 180, 20)
    assert figures.error_rate == pytest.approx(0.1)
    assert figures.agreement == pytest.approx(0.95)
    # p95 of 180 observations: rank 171 of the serving histogram lies in (1 ms, 2 ms], 71 of 80 in
    assert figures.serving_p95 == pytest.approx(0.001 + 0.001 * 71 / 80)
    assert figures.candidate_p95 == pytest.approx(0.002 + 0.002 * 151 / 160)
    assert worker_of(POD) == "1"


@pytest.mark.parametrize(
    "line",
    [
        f'optimodel_shadow_requests_total{{candidate="{B}"}} NaN',
        f'optimodel_shadow_requests_total{{candidate="{B}"}} -5',
        f'optimodel_shadow_requests_total{{candidate="{B}"}} 1e999',
        f'optimodel_shadow_requests_total{{candidate="{B}"}} 5 extra',
        f'optimodel_shadow_requests_total{{candidate="{B}}} 5',
        'optimodel_shadow_requests_total{candidate="' + "c" * 64 + '"} 5',
        f'optimodel_shadow_unknown_total{{candidate="{B}"}} 5',
        "\x00" * 100,
    ],
)
def test_hostile_lines_are_ignored(line: str) -> None:
    figures = Figures()
    add_pod(figures, line, B)
    assert (figures.requests, figures.errors, figures.pods) == (0, 0, 1)


def test_quantile_of_a_histogram_that_is_not_cumulative_stays_bounded() -> None:
    assert quantile({}, 0.95) is None
    assert quantile({0.001: 0.0, float("inf"): 0.0}, 0.95) is None
    assert quantile({0.001: 100.0, 0.002: 10.0, float("inf"): 100.0}, 0.95) == pytest.approx(0.00095)


def test_bucket_count_is_bounded() -> None:
    text = "\n".join(
        f'optimodel_shadow_serving_inference_seconds_bucket{{candidate="{B}",le="{i}"}} 1' for i in range(1000)
    )
    figures = Figures()
    add_pod(figures, text, B)
    assert len(figures.serving_buckets) == 200


# The verdict


def figures(requests: int, errors: int = 0, agreeing: float = 1.0, ratio: float = 1.0) -> Figures:
    return Figures(
        requests=requests,
        errors=errors,
        compared=requests,
        agreeing=requests * agreeing,
        serving_buckets={0.001: requests, float("inf"): requests},
        candidate_buckets={0.001 * ratio: requests, float("inf"): requests},
        pods=1,
    )


ANALYSIS = Analysis(min_requests=100, max_seconds=600, min_agreement=0.9, max_p95_latency_ratio=2.0)


@pytest.mark.parametrize(
    ("measured", "elapsed", "verdict", "words"),
    [
        (None, 10, "Running", "0/100 mirrored requests"),
        (figures(99, agreeing=0.1), 10, "Running", "99/100"),
        (figures(100), 10, "Passed", "every threshold held"),
        (figures(100, agreeing=0.85), 10, "Failed", "minAgreement: actual 0.8500 vs threshold 0.9"),
        (figures(95, errors=5), 10, "Failed", "maxErrorRate: actual 0.0500 vs threshold 0.01"),
        (figures(100, ratio=3.0), 10, "Failed", "maxP95LatencyRatio: actual 3.00 vs threshold 2"),
        (figures(50), 600, "Failed", "maxSeconds: 600 s passed with 50/100"),
    ],
)
def test_judge(measured: Figures | None, elapsed: float, verdict: str, words: str) -> None:
    judgement = judge(ANALYSIS, measured, elapsed, higher_is_better=True)
    assert judgement.verdict == verdict and words in judgement.message, judgement.message


def test_min_seconds_holds_a_pass_but_not_a_failure() -> None:
    analysis = Analysis(min_requests=100, min_seconds=120, min_agreement=0.9)
    held = judge(analysis, figures(150), 60, higher_is_better=True)
    assert held.verdict == "Running" and "judged 60 s more (minSeconds)" in held.message
    assert judge(analysis, figures(150), 120, higher_is_better=True).verdict == "Passed"
    assert judge(analysis, figures(150, agreeing=0.5), 10, higher_is_better=True).verdict == "Failed"


def test_regression_is_judged_on_the_mean_absolute_difference() -> None:
    analysis = Analysis(min_requests=10, max_mean_absolute_difference=0.5)
    close = Figures(requests=10, compared=40, difference=8.0, pods=1)
    far = replace(close, difference=40.0)
    assert judge(analysis, close, 1, higher_is_better=False).verdict == "Passed"
    failed = judge(analysis, far, 1, higher_is_better=False)
    assert failed.verdict == "Failed" and "maxMeanAbsoluteDifference: actual 1 vs threshold 0.5" in failed.message


# The reconcile


def shadow_deployment(sha: str, replicas: int = 2) -> DeploymentObservation:
    return replace(
        deployment(sha), name="digits-shadow", replicas=replicas, served=served(sha[:2]), controller_uid=OWNER.uid
    )


def candidate_pods(desired: Any, name: str) -> dict[str, Any] | None:
    """The Deployment of that name among the candidate Deployments the reconcile wants applied."""
    return next((d for d in desired.candidate_deployments if d["metadata"]["name"] == name), None)


def state(**kwargs: Any) -> Observed:
    base: dict[str, Any] = {
        "owner": OWNER,
        "generation": 1,
        "spec": parse_spec(wire(rollout=SHADOW)),
        "recipe_key": "12" * 32,
        "result": report("bb"),
        "report_uri": "s3://r",
        "deployment": deployment("aa"),
    }
    base.update(kwargs)
    return Observed(**base)


def reconcile(observed: Observed, now: str) -> tuple[Any, Any, Observed]:
    observed = replace(observed, analysis=analyze(observed, now))
    return desired_children(observed, DEFAULTS), compute_outcome(observed, now), observed


def conditions(outcome: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in outcome.status.conditions}


def test_a_passed_candidate_starts_beside_the_served_model() -> None:
    desired, outcome, _ = reconcile(state(), T0)
    assert desired.served == served("aa") and not desired.rollout
    shadow = candidate_pods(desired, "digits-shadow")
    assert shadow["metadata"]["name"] == "digits-shadow" and shadow["spec"]["replicas"] == 2
    assert shadow["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"] == B
    assert shadow["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "shadow"
    assert desired.service["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    assert desired.candidate_service["metadata"]["name"] == "digits-shadow"
    args = desired.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--mirror-url") + 1] == "http://digits-shadow.ml.svc:8501"
    assert args[args.index("--mirror-compare") + 1] == "classes"
    assert outcome.status.phase == r.ANALYZING and outcome.retry_after
    assert conditions(outcome)[r.READY] == ("False", r.SHADOW_ANALYZING)
    assert conditions(outcome)[r.RECONCILING] == ("True", r.PROGRESSING)
    assert conditions(outcome)[r.STALLED][0] == "False"
    analysis = outcome.status.analysis
    assert (analysis.phase, analysis.started_at, analysis.candidate_sha256) == (r.ANALYZING, T0, B)
    assert "waiting for the candidate's pods" in analysis.message


def test_figures_are_read_only_while_the_candidates_pods_run_it() -> None:
    assert figures_wanted(state()) is None
    assert figures_wanted(state(shadow=shadow_deployment("aa"))) is None  # still the previous candidate
    assert figures_wanted(state(shadow=shadow_deployment("bb"))) == B
    assert figures_wanted(state(shadow=shadow_deployment("bb"), deployment=deployment("bb"))) is None


def test_passing_figures_promote_the_candidate_once() -> None:
    _, first, _ = reconcile(state(shadow=shadow_deployment("bb")), T0)
    running = state(shadow=shadow_deployment("bb"), previous=first.status, figures=figures(100, agreeing=0.95))
    desired, outcome, _ = reconcile(running, T1)
    assert desired.served == served("bb") and desired.rollout
    assert candidate_pods(desired, "digits-shadow")["spec"]["replicas"] == 0
    analysis = outcome.status.analysis
    assert (analysis.phase, analysis.started_at, analysis.finished_at) == (r.ANALYSIS_PASSED, T0, T1)
    assert (analysis.requests, analysis.agreement) == (100, 0.95)
    assert [e.reason for e in outcome.events if e.reason == r.SHADOW_PASSED] == [r.SHADOW_PASSED]
    assert conditions(outcome)[r.READY] == ("False", r.ROLLOUT_STARTED)
    # The promotion rolls the serving pods; the record stays, no second Event.
    promoted = state(deployment=deployment("bb"), shadow=shadow_deployment("bb", 0), previous=outcome.status)
    desired, after, _ = reconcile(promoted, T_LATE)
    assert after.status.analysis == analysis and candidate_pods(desired, "digits-shadow") is None
    assert conditions(after)[r.READY] == ("True", r.AVAILABLE)
    assert r.SHADOW_PASSED not in [e.reason for e in after.events]


def test_disagreement_stops_the_candidate_and_keeps_the_served_model() -> None:
    _, first, _ = reconcile(state(shadow=shadow_deployment("bb")), T0)
    running = state(shadow=shadow_deployment("bb"), previous=first.status, figures=figures(200, agreeing=0.8))
    desired, outcome, _ = reconcile(running, T1)
    assert desired.served == served("aa") and not desired.rollout
    assert candidate_pods(desired, "digits-shadow")["spec"]["replicas"] == 0
    assert outcome.status.phase == r.ANALYSIS_FAILED_PHASE and not outcome.retry_after
    assert conditions(outcome)[r.STALLED] == ("True", r.SHADOW_FAILED)
    assert conditions(outcome)[r.RECONCILING][0] == "False"
    warnings = [e for e in outcome.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == [r.SHADOW_FAILED]
    assert "minAgreement: actual 0.8000 vs threshold 0.9" in warnings[0].message
    # Final: better figures later do not bring the candidate back.
    later = state(shadow=shadow_deployment("bb", 0), previous=outcome.status, figures=figures(1000))
    desired, again, _ = reconcile(later, T_LATE)
    assert desired.served == served("aa") and candidate_pods(desired, "digits-shadow") is None
    assert again.status.analysis == outcome.status.analysis and again.events == []


def test_a_retry_reopens_a_failed_analysis_for_min_requests_more() -> None:
    _, first, _ = reconcile(state(shadow=shadow_deployment("bb")), T0)
    running = state(shadow=shadow_deployment("bb"), previous=first.status, figures=figures(200, agreeing=0.85))
    _, failed, _ = reconcile(running, T1)
    assert failed.status.analysis.phase == r.ANALYSIS_FAILED
    assert "or judge this one on more traffic: kubectl -n ml annotate om digits" in failed.status.message
    # The request reopens it: the candidate's pods start again, the window counts from 200.
    asked = state(shadow=shadow_deployment("bb", 0), previous=failed.status, retry_requested="1764410000")
    desired, reopened, _ = reconcile(asked, T2)
    analysis = reopened.status.analysis
    assert (analysis.phase, analysis.step_start_requests, analysis.step_started_at) == (r.ANALYZING, 200, T2)
    assert analysis.started_at == T0 and analysis.finished_at is None
    assert candidate_pods(desired, "digits-shadow")["spec"]["replicas"] == 2 and desired.served == served("aa")
    assert reopened.status.last_handled_retry_at == "1764410000"
    told = desired.retry.event(None)  # the controller posts it
    assert told.reason == r.RETRY_REQUESTED
    reopens = "the failed analysis of sha256:bbbbbbbbbbbb reopens"
    assert told.message == f"optimodel.io/retry-requested-at=1764410000: {reopens}"
    assert conditions(reopened)[r.RECONCILING][0] == "True"
    # 100 more mirrored requests, all agreeing: 0.85 -> 0.9 on all 300, and the verdict is taken again.
    more = state(
        shadow=shadow_deployment("bb"), previous=reopened.status, retry_requested="1764410000",
        figures=replace(figures(300), agreeing=270.0),
    )
    desired, outcome, _ = reconcile(more, T3)
    assert outcome.status.analysis.phase == r.ANALYSIS_PASSED and desired.served == served("bb")
    # A request while nothing failed is recorded and ignored as before (here: the result is stored).
    desired, _, _ = reconcile(replace(running, retry_requested="again"), T1)
    assert desired.retry.event(None).reason == r.RETRY_IGNORED


def test_no_verdict_within_max_seconds_aborts() -> None:
    _, first, _ = reconcile(state(shadow=shadow_deployment("bb")), T0)
    quiet = state(shadow=shadow_deployment("bb"), previous=first.status, figures=figures(3))
    desired, outcome, _ = reconcile(quiet, T_LATE)
    assert desired.served == served("aa")
    assert "maxSeconds: 600 s passed with 3/100" in outcome.status.analysis.message


def test_the_first_model_and_strategy_replace_roll_out_without_analysis() -> None:
    desired, outcome, _ = reconcile(state(deployment=None), T0)
    assert desired.served == served("bb") and outcome.status.analysis is None
    replace_spec = parse_spec(wire())
    desired, outcome, _ = reconcile(state(spec=replace_spec, shadow=shadow_deployment("bb")), T0)
    assert desired.served == served("bb") and desired.candidate_service is None
    assert candidate_pods(desired, "digits-shadow")["spec"]["replicas"] == 0  # a candidate left running is stopped
    assert "--mirror-url" not in build_deployment(replace_spec, OWNER, served("bb"), DEFAULTS)["spec"][
        "template"]["spec"]["containers"][0]["args"]


def test_a_shadow_deployment_of_someone_else_is_never_taken_over() -> None:
    from optimodel.reconcile.ownership import in_the_way

    foreign = replace(shadow_deployment("bb"), controller_uid="someone-else")
    serving = replace(deployment("aa"), controller_uid=OWNER.uid)
    problem = in_the_way(
        state(shadow=foreign, deployment=serving), None, ServiceObservation("digits-shadow", "someone-else")
    )
    assert problem is not None and problem.reason == r.OBJECT_IN_THE_WAY
    assert "Deployment digits-shadow, Service digits-shadow in namespace ml" in problem.message
    # Not asked for (strategy replace): left alone, neither in the way nor scaled down.
    assert in_the_way(state(spec=parse_spec(wire()), shadow=foreign, deployment=serving), None) is None
    desired, _, _ = reconcile(state(spec=parse_spec(wire()), shadow=foreign), T0)
    assert candidate_pods(desired, "digits-shadow") is None


# Canary: the candidate's pods behind the serving Service, a larger share at each step

CANARY = {
    "strategy": "canary",
    "steps": [20, 50],
    "analysis": {"minRequests": 100, "maxSeconds": 600, "minAgreement": 0.9},
}
T2, T3, T_STEP_LATE = "2026-11-29T10:02:00Z", "2026-11-29T10:03:00Z", "2026-11-29T10:12:00Z"


def canary_deployment(sha: str, replicas: int) -> DeploymentObservation:
    return replace(
        deployment(sha), name="digits-canary", replicas=replicas, updated_replicas=replicas,
        ready_replicas=replicas, available_replicas=replicas, served=served(sha[:2]), controller_uid=OWNER.uid,
        live=True,
    )


def live(sha: str) -> DeploymentObservation:
    """Serving pods that all carry the traffic label (rolled out with strategy canary)."""
    return replace(deployment(sha), live=True, controller_uid=OWNER.uid)


def canary_state(**kwargs: Any) -> Observed:
    return state(spec=parse_spec(wire(rollout=CANARY)), **kwargs)


@pytest.mark.parametrize(
    ("serving", "percent", "pods"), [(2, 20, 1), (2, 50, 2), (1, 25, 1), (3, 75, 9), (0, 50, 1), (10, 1, 1)]
)
def test_canary_pods_make_up_at_least_the_steps_share(serving: int, percent: int, pods: int) -> None:
    assert canary_replicas(serving, percent) == pods
    assert pods / (max(serving, 1) + pods) >= percent / 100


def test_canary_steps_default_and_belong_to_canary() -> None:
    assert parse_spec(wire(rollout={"strategy": "canary"})).rollout.canary_steps == (25, 50)
    assert parse_spec(wire(rollout=SHADOW)).rollout.canary_steps == ()
    assert parse_spec(wire(rollout={"strategy": "canary"})).rollout.shadow == Analysis()


def test_canary_pods_join_the_service_only_once_every_serving_pod_carries_the_label() -> None:
    # The serving pods do not carry the traffic label yet: their template gets it (one roll), the
    # Service keeps selecting them by component, the candidate has no pods yet.
    desired, outcome, _ = reconcile(canary_state(), T0)
    template = desired.deployment["spec"]["template"]
    assert template["metadata"]["labels"][TRAFFIC_LABEL] == "live"
    assert desired.deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "serving"
    args = template["spec"]["containers"][0]["args"]
    assert args[args.index("--mirror-url") + 1] == "http://digits-canary.ml.svc:8501"
    assert desired.service["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    assert candidate_pods(desired, "digits-canary")["spec"]["replicas"] == 0
    analysis = outcome.status.analysis
    assert (analysis.step, analysis.steps, analysis.traffic_percent, analysis.step_started_at) == (1, 2, 0, T0)
    assert conditions(outcome)[r.READY] == ("False", r.CANARY_ANALYZING)
    assert "step 1/2, 0% of the serving pods: waiting for the candidate's pods" in analysis.message
    # Rolled out with the label: the Service selects by it, and the candidate takes its share.
    desired, outcome, _ = reconcile(canary_state(deployment=live("aa"), previous=outcome.status), T1)
    selector = desired.service["spec"]["selector"]
    assert selector[TRAFFIC_LABEL] == "live" and "app.kubernetes.io/component" not in selector
    assert selector["app.kubernetes.io/instance"] == "digits"
    canary = candidate_pods(desired, "digits-canary")
    assert canary["spec"]["replicas"] == 1  # 1 of 3 pods: at least 20%
    assert canary["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "canary"
    assert canary["spec"]["template"]["metadata"]["labels"][TRAFFIC_LABEL] == "live"
    assert canary["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"] == B
    assert outcome.status.analysis.traffic_percent == 33
    assert desired.candidate_service["spec"]["selector"]["app.kubernetes.io/component"] == "canary"
    assert "Analysis:      Analyzing sha256:bbbbbbbbbbbb step 1/2 (33% of pods) | 0 mirrored" in shown(outcome)


def test_each_canary_step_needs_min_requests_more_then_the_last_promotes() -> None:
    _, first, _ = reconcile(canary_state(deployment=live("aa"), canary=canary_deployment("bb", 1)), T0)
    step_one = canary_state(
        deployment=live("aa"),
        canary=canary_deployment("bb", 1),
        previous=first.status,
        figures=figures(100, agreeing=0.95),
    )
    desired, outcome, _ = reconcile(step_one, T1)
    analysis = outcome.status.analysis
    assert (analysis.phase, analysis.step, analysis.step_started_at, analysis.step_start_requests) == (
        r.ANALYZING, 2, T1, 100
    )
    assert analysis.traffic_percent == 50 and desired.served == served("aa")
    assert candidate_pods(desired, "digits-canary")["spec"]["replicas"] == 2
    assert [e.reason for e in outcome.events if e.reason == r.CANARY_STEP_PASSED] == [r.CANARY_STEP_PASSED]
    # Step 2 counts from its own start: 150 in all is 50 of its 100.
    halfway = replace(
        step_one, canary=canary_deployment("bb", 2), previous=outcome.status, figures=figures(150, agreeing=0.95)
    )
    _, outcome, _ = reconcile(halfway, T2)
    assert "step 2/2, 50% of the serving pods: 50/100 mirrored requests" in outcome.status.analysis.message
    assert not [e for e in outcome.events if e.reason == r.CANARY_STEP_PASSED]
    done = replace(halfway, previous=outcome.status, figures=figures(200, agreeing=0.95))
    desired, outcome, _ = reconcile(done, T3)
    assert outcome.status.analysis.phase == r.ANALYSIS_PASSED and desired.served == served("bb") and desired.rollout
    assert candidate_pods(desired, "digits-canary")["spec"]["replicas"] == 0
    assert [e.reason for e in outcome.events if e.reason == r.CANARY_PASSED] == [r.CANARY_PASSED]


def test_a_canary_step_that_breaks_a_threshold_returns_all_traffic_to_the_served_model() -> None:
    _, first, _ = reconcile(canary_state(deployment=live("aa"), canary=canary_deployment("bb", 1)), T0)
    running = canary_state(
        deployment=live("aa"), canary=canary_deployment("bb", 2), previous=first.status, figures=figures(100)
    )
    _, step_two, _ = reconcile(running, T1)
    broken = replace(running, previous=step_two.status, figures=figures(200, agreeing=0.85))
    desired, outcome, _ = reconcile(broken, T2)
    assert desired.served == served("aa") and not desired.rollout
    assert candidate_pods(desired, "digits-canary")["spec"]["replicas"] == 0
    assert conditions(outcome)[r.STALLED] == ("True", r.CANARY_FAILED)
    assert "every live request goes to the served model again" in outcome.status.message
    warnings = [e for e in outcome.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == [r.CANARY_FAILED]
    assert "minAgreement: actual 0.8500 vs threshold 0.9" in warnings[0].message


def test_max_seconds_counts_from_each_steps_start_and_restarted_counters_reopen_the_window() -> None:
    _, first, _ = reconcile(canary_state(deployment=live("aa"), canary=canary_deployment("bb", 1)), T0)
    step_one = canary_state(
        deployment=live("aa"), canary=canary_deployment("bb", 2), previous=first.status, figures=figures(100)
    )
    _, step_two, _ = reconcile(step_one, T_STEP_LATE)  # step 1 passed 12 minutes in (maxSeconds 600 is per step)
    assert step_two.status.analysis.step == 2
    # A serving pod restarted: the sum went down to 40; the step's window starts again from there.
    restarted = replace(step_one, previous=step_two.status, figures=figures(40))
    _, outcome, _ = reconcile(restarted, "2026-11-29T10:20:00Z")
    analysis = outcome.status.analysis
    assert analysis.phase == r.ANALYZING and analysis.step_start_requests == 40
    assert "0/100 mirrored requests" in analysis.message
    late = replace(restarted, previous=outcome.status, figures=figures(90))
    _, outcome, _ = reconcile(late, "2026-11-29T10:22:01Z")
    assert outcome.status.analysis.phase == r.ANALYSIS_FAILED
    assert "maxSeconds: 600 s passed with 50/100" in outcome.status.analysis.message


def test_leaving_canary_gives_the_service_back_to_the_serving_pods_and_stops_the_candidate() -> None:
    replace_spec = parse_spec(wire())
    desired, _, _ = reconcile(state(spec=replace_spec, deployment=live("aa"), canary=canary_deployment("bb", 1)), T0)
    assert desired.service["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    assert TRAFFIC_LABEL not in desired.service["spec"]["selector"]
    assert TRAFFIC_LABEL not in desired.deployment["spec"]["template"]["metadata"]["labels"]
    assert candidate_pods(desired, "digits-canary")["spec"]["replicas"] == 0
    assert desired.candidate_service is None


def shown(outcome: Any) -> str:
    """`kubectl optimodel get` of a resource with the outcome's status, at 10:02."""
    from datetime import UTC, datetime

    from optimodel.controller.reconciler import status_patch
    from optimodel.kubectl.view import Gathered, render, summarize

    model = {"metadata": {"name": "digits", "namespace": "ml", "generation": 1}, "status": status_patch(outcome.status)}
    return render(summarize(Gathered(model=model)), datetime(2026, 11, 29, 10, 2, tzinfo=UTC))


def test_kubectl_get_shows_the_analysis_and_its_figures() -> None:
    _, first, _ = reconcile(state(shadow=shadow_deployment("bb")), T0)
    running = state(shadow=shadow_deployment("bb"), previous=first.status, figures=figures(60, agreeing=0.95))
    _, outcome, _ = reconcile(running, T1)
    text = shown(outcome)
    assert "Phase:         Analyzing" in text
    assert (
        "Analysis:      Analyzing sha256:bbbbbbbbbbbb | 60 mirrored requests, agreement 0.95, p95 latency ratio 1, "
        "error rate 0 | started 2m ago"
    ) in text
    assert "60/100 mirrored requests so far" in text


# The server's reading of a candidate's answer (optimodel.serve.mirror, pure functions)


def test_candidate_outputs_pair_by_name_or_else_by_position() -> None:
    import json

    import numpy as np

    from optimodel.serve.mirror import CandidateError, compare, decode_answer

    serving = {"dense_1": np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)}

    def answer(*outputs: tuple[str, list[float]]) -> bytes:
        return json.dumps(
            {"outputs": [{"name": n, "shape": [2, 2], "datatype": "FP32", "data": d} for n, d in outputs]}
        ).encode()

    renamed = decode_answer(answer(("dense_3", [0.2, 0.8, 0.3, 0.7])), serving)
    assert compare(serving, renamed, "classes").agreeing == 1  # another version names its output dense_3
    two = answer(("other", [0.0] * 4), ("dense_1", [0.9, 0.1, 0.9, 0.1]))
    with pytest.raises(CandidateError, match="2 outputs"):
        decode_answer(two, serving)
    for hostile in (b"[", b"[]", b'{"outputs": 5}', answer(("dense_1", [1.0] * 3)), answer(("dense_1", ["a"] * 4))):
        with pytest.raises(CandidateError):
            decode_answer(hostile, serving)
    with pytest.raises(CandidateError, match="not finite"):
        compare(serving, {"dense_1": np.array([[np.inf, 0.0], [0.0, 0.0]])}, "values")


def test_requests_name_the_candidates_inputs_by_name_or_else_by_position() -> None:
    import json

    import numpy as np

    from optimodel.serve.mirror import CandidateError, encode_request, input_names

    arrays = {"image": np.zeros((1, 2), dtype=np.float32), "mask": np.ones((1, 2), dtype=np.int32)}
    same = json.loads(encode_request(arrays, ["mask", "image"]))["inputs"]
    expected = [("image", "FP32", [0, 0]), ("mask", "INT32", [1, 1])]
    assert [(i["name"], i["datatype"], i["data"]) for i in same] == expected
    renamed = json.loads(encode_request(arrays, ["input_3", "input_4"]))["inputs"]
    assert [(i["name"], i["data"]) for i in renamed] == [("input_3", [0, 0]), ("input_4", [1, 1])]
    with pytest.raises(CandidateError, match="1 inputs, the serving model 2"):
        encode_request(arrays, ["only"])
    assert input_names(b'{"inputs": [{"name": "flatten_1_input"}]}') == ["flatten_1_input"]
    for hostile in (b"{", b'{"inputs": []}', b'{"inputs": [{"name": 5}]}', b'{"inputs": [{}]}', b"[]"):
        with pytest.raises(CandidateError):
            input_names(hostile)
