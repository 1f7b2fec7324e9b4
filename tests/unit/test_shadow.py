"""spec.rollout and the shadow analysis as pure code: spec rules, /metrics parsing, the verdict, and
what the reconcile does with it (which model serves, the candidate's pods, status, Events)."""

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
from optimodel.reconcile.shadow import analyze, figures_wanted
from optimodel.resources import Owner, PodDefaults, build_deployment
from optimodel.spec import (
    ANALYSIS_NEEDS_SHADOW,
    MAX_DIFFERENCE_FOR_VALUES,
    MIN_AGREEMENT_FOR_CLASSES,
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
        ("accuracy", {"strategy": "canary"}, "spec.rollout.strategy"),
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
    assert [rule["message"] for rule in rollout["x-kubernetes-validations"]] == [ANALYSIS_NEEDS_SHADOW]
    assert rollout["properties"]["strategy"]["enum"] == ["replace", "shadow"]


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
    shadow = desired.shadow_deployment
    assert shadow["metadata"]["name"] == "digits-shadow" and shadow["spec"]["replicas"] == 2
    assert shadow["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"] == B
    assert shadow["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "shadow"
    assert desired.service["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    assert desired.shadow_service["metadata"]["name"] == "digits-shadow"
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
    assert desired.shadow_deployment["spec"]["replicas"] == 0
    analysis = outcome.status.analysis
    assert (analysis.phase, analysis.started_at, analysis.finished_at) == (r.ANALYSIS_PASSED, T0, T1)
    assert (analysis.requests, analysis.agreement) == (100, 0.95)
    assert [e.reason for e in outcome.events if e.reason == r.SHADOW_PASSED] == [r.SHADOW_PASSED]
    assert conditions(outcome)[r.READY] == ("False", r.ROLLOUT_STARTED)
    # The promotion rolls the serving pods; the record stays, no second Event.
    promoted = state(deployment=deployment("bb"), shadow=shadow_deployment("bb", 0), previous=outcome.status)
    desired, after, _ = reconcile(promoted, T_LATE)
    assert after.status.analysis == analysis and desired.shadow_deployment is None
    assert conditions(after)[r.READY] == ("True", r.AVAILABLE)
    assert r.SHADOW_PASSED not in [e.reason for e in after.events]


def test_disagreement_stops_the_candidate_and_keeps_the_served_model() -> None:
    _, first, _ = reconcile(state(shadow=shadow_deployment("bb")), T0)
    running = state(shadow=shadow_deployment("bb"), previous=first.status, figures=figures(200, agreeing=0.8))
    desired, outcome, _ = reconcile(running, T1)
    assert desired.served == served("aa") and not desired.rollout
    assert desired.shadow_deployment["spec"]["replicas"] == 0
    assert outcome.status.phase == r.ANALYSIS_FAILED_PHASE and not outcome.retry_after
    assert conditions(outcome)[r.STALLED] == ("True", r.SHADOW_FAILED)
    assert conditions(outcome)[r.RECONCILING][0] == "False"
    warnings = [e for e in outcome.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == [r.SHADOW_FAILED]
    assert "minAgreement: actual 0.8000 vs threshold 0.9" in warnings[0].message
    # Final: better figures later do not bring the candidate back.
    later = state(shadow=shadow_deployment("bb", 0), previous=outcome.status, figures=figures(1000))
    desired, again, _ = reconcile(later, T_LATE)
    assert desired.served == served("aa") and desired.shadow_deployment is None
    assert again.status.analysis == outcome.status.analysis and again.events == []


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
    assert desired.served == served("bb") and desired.shadow_service is None
    assert desired.shadow_deployment["spec"]["replicas"] == 0  # a candidate left running is stopped
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
    assert desired.shadow_deployment is None


def test_kubectl_get_shows_the_analysis_and_its_figures() -> None:
    from datetime import UTC, datetime

    from optimodel.controller.reconciler import status_patch
    from optimodel.kubectl.view import Gathered, render, summarize

    _, first, _ = reconcile(state(shadow=shadow_deployment("bb")), T0)
    running = state(shadow=shadow_deployment("bb"), previous=first.status, figures=figures(60, agreeing=0.95))
    _, outcome, _ = reconcile(running, T1)
    model = {"metadata": {"name": "digits", "namespace": "ml", "generation": 1}, "status": status_patch(outcome.status)}
    text = render(summarize(Gathered(model=model)), datetime(2026, 11, 29, 10, 2, tzinfo=UTC))
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
