"""What the real node does to the operator's pods, and what the user reads about it in status.

A Job over its memory limit is OOM-killed by the kernel; a Job or serving pod whose image the node
does not have never starts. Each ends in a Stalled resource whose message says what to change,
with a Warning Event, never a silent wait; a serving image that is missing leaves the model that
was serving on its pods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import apply, condition, get, manifest, running_operator
from tests.cluster.operator_kit import setup_namespace as with_credentials
from tests.support.polling import wait_for


def stalled(cluster: DevCluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body = get(cluster, namespace, "om", name)
        found = condition(body, "Stalled")
        return body if found.get("status") == "True" and found.get("reason") == reason else None

    return wait_for(f"{name} Stalled with {reason}", probe, timeout=240)


def warnings(cluster: DevCluster, namespace: str) -> dict[str, str]:
    items = get(cluster, namespace, "events")["items"]
    return {e["reason"]: e["message"] for e in items if e["type"] == "Warning"}


def test_jobs_that_run_out_of_memory_or_lack_their_image(
    dev_cluster: DevCluster, namespace: str, s3: str, tmp_path: Path
) -> None:
    with_credentials(dev_cluster, namespace)
    hungry = manifest("hungry", s3)
    hungry["spec"]["job"]["resources"] = {"limits": {"memory": "48Mi"}}  # TensorFlow alone needs more
    hungry["spec"]["artifacts"]["uri"] = f"s3://artifacts/{namespace}-hungry/"
    absent = manifest("absent", s3)
    absent["spec"]["job"]["image"] = "localhost/optimodel-optimizer:not-built"
    absent["spec"]["artifacts"]["uri"] = f"s3://artifacts/{namespace}-absent/"
    allowed = {"OPTIMODEL_ALLOWED_JOB_IMAGES": f"{dev_cluster.images['job']},localhost/optimodel-optimizer:not-built"}
    with running_operator(dev_cluster, tmp_path / "operator.log", env=allowed):
        apply(dev_cluster, namespace, hungry)
        apply(dev_cluster, namespace, absent)
        oom = stalled(dev_cluster, namespace, "hungry", "JobOutOfMemory")
        missing = stalled(dev_cluster, namespace, "absent", "JobCannotStart")
        reported = wait_for(
            "both Warning Events",
            lambda: (w := warnings(dev_cluster, namespace)) and {"JobOutOfMemory", "JobCannotStart"} <= set(w) and w,
        )

    message = oom["status"]["message"]
    assert "OOMKilled" in message and "48Mi" in message and "raise spec.job.resources.limits.memory" in message
    assert "48Mi" in reported["JobOutOfMemory"]
    message = missing["status"]["message"]
    assert "image localhost/optimodel-optimizer:not-built is not present on the node" in message
    assert "ErrImageNeverPull" in message and "not-built" in reported["JobCannotStart"]
    assert condition(missing, "Reconciling")["status"] == "False"


def test_a_serving_image_the_node_lacks_leaves_the_previous_model_serving(
    dev_cluster: DevCluster, namespace: str, s3: str, tmp_path: Path
) -> None:
    with_credentials(dev_cluster, namespace)
    body = manifest("digits", s3)
    body["spec"]["artifacts"]["uri"] = f"s3://artifacts/{namespace}/"
    with running_operator(dev_cluster, tmp_path / "operator.log"):
        apply(dev_cluster, namespace, body)
        dev_cluster.kubectl("wait", "--for=condition=Ready", "om/digits", "-n", namespace, "--timeout=240s")
    serving = {
        p["metadata"]["name"]
        for p in get(dev_cluster, namespace, "pods", "-l", "app.kubernetes.io/component=serving")["items"]
    }

    # An operator upgraded to a serve image the node does not have rolls the Deployment to it.
    env = {"OPTIMODEL_SERVE_IMAGE": "localhost/optimodel-serve:not-built"}
    with running_operator(dev_cluster, tmp_path / "operator-2.log", env=env):
        om = stalled(dev_cluster, namespace, "digits", "RolloutCannotStart")
    message = om["status"]["message"]
    assert "image localhost/optimodel-serve:not-built is not present on the node" in message
    assert "the pods of the previous model keep serving (1/1 available)" in message
    pods = get(dev_cluster, namespace, "pods", "-l", "app.kubernetes.io/component=serving")["items"]
    running = {p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"}
    assert running == serving  # the old pod still runs, untouched
