"""`kubectl optimodel get`: the tree and the JSON drawn from gathered objects, against golden files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from optimodel.kubectl.cli import build_parser
from optimodel.kubectl.health import health
from optimodel.kubectl.view import Gathered, render, summarize

GOLDEN = Path(__file__).parent / "golden" / "kubectl"
NOW = datetime(2026, 12, 1, 10, 21, tzinfo=UTC)


def gathered(name: str) -> Gathered:
    return Gathered(**yaml.safe_load((GOLDEN / f"{name}.yaml").read_text()))


def check_golden(path: Path, text: str) -> None:
    """OPTIMODEL_UPDATE_GOLDEN=1 rewrites the file; review the diff."""
    if os.environ.get("OPTIMODEL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path.name} (OPTIMODEL_UPDATE_GOLDEN=1 rewrites it)"


def test_a_rollout_draws_as_a_tree() -> None:
    check_golden(GOLDEN / "rollout.txt", render(summarize(gathered("rollout")), NOW))


def test_json_is_the_same_story_with_timestamps() -> None:
    summary = summarize(gathered("rollout"))
    check_golden(GOLDEN / "rollout.json", json.dumps(summary, indent=2) + "\n")
    deployment = summary["tree"]["children"][-1]
    assert [rs["info"] for rs in deployment["children"]] == [
        "revision 2, serves sha256:bbbbbbbbbbbb",
        "revision 1, serves sha256:aaaaaaaaaaaa",
    ]
    assert [len(rs["children"]) for rs in deployment["children"]] == [2, 1]
    assert summary["health"] == {
        "status": "Progressing",
        "message": "1/2 updated, 1 available, serving sha256:bbbbbbbbbbbb",
    }


def test_pods_show_readiness_restarts_and_why_they_wait() -> None:
    tree = summarize(gathered("rollout"))["tree"]
    pods = [pod for rs in tree["children"][-1]["children"] for pod in rs["children"]]
    assert [(p["status"], p["info"]) for p in pods] == [
        ("Running", "ready 1/1, restarts 1, sha256:bbbbbbbbbbbb"),
        ("ContainerCreating", "ready 0/1, restarts 0, sha256:bbbbbbbbbbbb"),
        ("Running", "ready 1/1, restarts 0, sha256:aaaaaaaaaaaa"),
    ]


def test_a_new_resource_is_drawn_before_the_operator_wrote_anything() -> None:
    new = {
        "metadata": {"name": "digits", "namespace": "ml", "uid": "u", "generation": 1},
        "status": {"observedGeneration": -1},
    }
    text = render(summarize(Gathered(new)), NOW)
    assert "Health:        ◌ Progressing: Waiting for the operator to judge generation 1" in text
    assert "Candidate:     none yet" in text and "Conditions:" not in text


def _with(conditions: dict[str, tuple[str, str]], generation: int = 2, observed: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "conditions": [{"type": t, "status": s, "message": m} for t, (s, m) in conditions.items()],
        },
    }


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (_with({"Ready": ("True", "serving"), "Stalled": ("False", "")}), ("Healthy", "serving")),
        (_with({"Ready": ("False", "x"), "Stalled": ("True", "gate")}), ("Degraded", "gate")),
        (_with({"Ready": ("False", "x"), "Reconciling": ("True", "job")}), ("Progressing", "job")),
        (
            _with({"Ready": ("True", "serving")}, generation=3),
            ("Progressing", "Waiting for the operator to judge generation 3"),
        ),
        ({"metadata": {"generation": 1}}, ("Progressing", "Waiting for the operator to judge generation 1")),
    ],
)
def test_health_reads_like_argo_cd_and_kstatus(model: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health(model) == expected


def test_the_command_line() -> None:
    args = build_parser().parse_args(["get", "digits", "-n", "ml", "--watch", "-o", "json"])
    assert (args.command, args.name, args.namespace, args.watch, args.output) == ("get", "digits", "ml", True, "json")
    assert build_parser().parse_args(["retry", "digits"]).command == "retry"


def test_a_shadow_candidate_draws_beside_the_serving_deployment() -> None:
    """While a shadow analysis runs, the candidate's Deployment, ReplicaSet and pod are in the tree too."""
    sha = "c" * 64
    base = gathered("rollout")
    shadow = {
        "metadata": {"name": "digits-shadow", "uid": "dep-shadow", "creationTimestamp": "2026-12-01T10:20:00Z"},
        "spec": {"replicas": 1, "template": {"metadata": {"annotations": {"optimodel.io/artifact-sha256": sha}}}},
        "status": {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1},
    }
    replica_set = {
        "metadata": {"name": "digits-shadow-5d8f", "uid": "rs-shadow", "creationTimestamp": "2026-12-01T10:20:00Z",
                     "ownerReferences": [{"uid": "dep-shadow"}],
                     "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 1, "template": {"metadata": {"annotations": {"optimodel.io/artifact-sha256": sha}}}},
        "status": {"readyReplicas": 1},
    }
    pod = {
        "metadata": {"name": "digits-shadow-5d8f-x1", "uid": "pod-shadow", "creationTimestamp": "2026-12-01T10:20:05Z",
                     "ownerReferences": [{"uid": "rs-shadow"}],
                     "annotations": {"optimodel.io/artifact-sha256": sha}},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"ready": True, "restartCount": 0, "state": {"running": {}}}]},
    }
    with_shadow = Gathered(base.model, base.jobs, base.deployment, [*base.replica_sets, replica_set],
                           [*base.pods, pod], base.events, [shadow])
    tree = summarize(with_shadow)["tree"]
    serving, candidate = tree["children"][-2:]
    assert serving["name"] == "digits-serving"
    assert (candidate["kind"], candidate["name"], candidate["status"]) == ("Deployment", "digits-shadow", "1/1")
    assert candidate["info"] == "1 updated, 1 available, wants sha256:cccccccccccc"
    assert [rs["name"] for rs in candidate["children"]] == ["digits-shadow-5d8f"]
    assert [p["name"] for p in candidate["children"][0]["children"]] == ["digits-shadow-5d8f-x1"]
    assert "digits-shadow" in render(summarize(with_shadow), NOW)
