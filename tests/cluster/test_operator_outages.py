"""Outages of what the operator and its pods depend on, each ending with the story finished and nothing lost.

- The operator killed (SIGKILL) right after a gate verdict, while the new model rolls out: the one
  started again finds the Job and the Deployment as they are, creates nothing twice and finishes.
- The Job's pod killed while it optimizes: the Job starts another, which publishes; one Job.
- The API server restarted while a Job runs: every watch of the operator breaks. The operator here
  resyncs once an hour, so only re-established watches can tell it that the Job finished and, later,
  that the spec changed.
- S3 unreachable while the Job publishes its result: the Job's pod fails with the storage exit code,
  nothing half-written is published, the Job's next pod publishes once S3 is back, and only then is
  the model served.
- S3 unreachable while a serving pod downloads its model: the pod retries inside (no restart, no crash
  loop), the other replica keeps serving, and the pod becomes ready by itself once S3 is back.

S3 goes away through a TCP gate in front of the moto server (an injected fault: the gate refuses
connections and cuts open ones, as a network outage does, and the server keeps what it holds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import (
    Operator,
    apply,
    condition,
    get,
    jobs,
    manifest,
    running_operator,
    setup_namespace,
)
from tests.support.polling import wait_for
from tests.support.tcpgate import TcpGate

SERVING = "app.kubernetes.io/component=serving"


@pytest.fixture(scope="module")
def operator(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """No resync within a test: what the operator learns, it learns from its watches."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {"OPTIMODEL_RESYNC_SECONDS": "3600", "OPTIMODEL_FULL_RESYNC_SECONDS": "3600"}
    with running_operator(dev_cluster, log, env=env) as runner:
        yield runner


@pytest.fixture
def gate(dev_cluster: DevCluster, s3: str) -> Iterator[TcpGate]:
    host, port = s3.removeprefix("http://").rsplit(":", 1)
    opened = TcpGate(dev_cluster.host_ip, (host, int(port)))
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


def create(cluster: DevCluster, namespace: str, name: str, endpoint: str, replicas: int = 1) -> dict[str, Any]:
    """The kit's int8 resource with results of its own (nothing shared with other tests); its manifest."""
    setup_namespace(cluster, namespace)
    body = manifest(name, endpoint)
    body["spec"]["artifacts"]["uri"] = f"s3://artifacts/{namespace}/"
    body["spec"]["serving"]["replicas"] = replicas
    apply(cluster, namespace, body)
    return body


def ready(cluster: DevCluster, namespace: str, name: str, generation: int = 1, timeout: float = 240) -> dict[str, Any]:
    def judged() -> dict[str, Any] | None:
        body = get(cluster, namespace, "om", name)
        status = (body or {}).get("status") or {}
        current = status.get("observedGeneration") == generation
        return body if current and condition(body, "Ready").get("status") == "True" else None

    try:
        return wait_for(f"{name} Ready at generation {generation}", judged, timeout=timeout)
    except AssertionError as error:
        body = get(cluster, namespace, "om", name)
        raise AssertionError(f"{error}\nstatus: {json.dumps((body or {}).get('status'), indent=1)}") from None


def reasons(cluster: DevCluster, namespace: str, name: str) -> list[str]:
    listed = get(cluster, namespace, "events", "--field-selector", f"involvedObject.name={name}")
    return [event["reason"] for event in listed["items"]]


def pods(cluster: DevCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return list(get(cluster, namespace, "pods", "-l", selector)["items"])


def logs(cluster: DevCluster, namespace: str, pod: str) -> str:
    return cluster.kubectl("logs", "-n", namespace, pod, check=False).stdout


def stored(s3: str, prefix: str) -> list[str]:
    client = boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    listed = client.list_objects_v2(Bucket="artifacts", Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_an_api_server_restart_while_the_job_runs_loses_nothing(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator
) -> None:
    create(dev_cluster, namespace, "restart", s3)
    wait_for("the Job", lambda: jobs(dev_cluster, namespace), timeout=60)

    started = time.monotonic()
    dev_cluster.restart_api_server()
    print(f"API server restarted in {time.monotonic() - started:.1f} s")

    served = ready(dev_cluster, namespace, "restart")
    assert len(jobs(dev_cluster, namespace)) == 1
    posted = reasons(dev_cluster, namespace, "restart")
    assert posted.count("JobCreated") == 1 and posted.count("RolloutStarted") == 1, posted

    # The resource's own watch is back too: a spec change is acted on without any resync.
    patch = {"spec": {"serving": {"replicas": 2}}}
    dev_cluster.kubectl("patch", "om", "restart", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    scaled = ready(dev_cluster, namespace, "restart", generation=2, timeout=90)
    assert scaled["status"]["serving"]["sha256"] == served["status"]["serving"]["sha256"]
    assert len(jobs(dev_cluster, namespace)) == 1
    assert operator.alive()


def test_the_operator_killed_mid_rollout_finishes_it_once_started_again(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator
) -> None:
    body = create(dev_cluster, namespace, "killed", s3)
    first = ready(dev_cluster, namespace, "killed")

    body["spec"]["source"]["uri"] = "s3://models/digits/2/model.h5"
    apply(dev_cluster, namespace, body)

    def rolling_out() -> bool:
        status = (get(dev_cluster, namespace, "om", "killed") or {}).get("status") or {}
        return status.get("observedGeneration") == 2 and status.get("phase") == "RollingOut"

    wait_for("the verdict on version 2 and its rollout", rolling_out, timeout=240, interval=0.1)
    assert operator.proc is not None
    operator.proc.kill()  # no clean stop: whatever was in flight is lost with the process
    operator.proc.wait()
    operator.start()

    second = ready(dev_cluster, namespace, "killed", generation=2)
    assert second["status"]["serving"]["sha256"] == second["status"]["candidate"]["sha256"]
    assert second["status"]["serving"]["sha256"] != first["status"]["serving"]["sha256"]
    assert len(jobs(dev_cluster, namespace)) == 2  # one per version
    posted = reasons(dev_cluster, namespace, "killed")
    assert posted.count("JobCreated") == 2 and posted.count("RolloutStarted") == 2, posted
    deployment = get(dev_cluster, namespace, "deployment", second["status"]["serving"]["deployment"])
    assert deployment["metadata"]["generation"] == 2, "the new model's template was applied more than once"


def test_the_jobs_pod_killed_mid_run_is_replaced_by_the_job(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator
) -> None:
    create(dev_cluster, namespace, "podgone", s3)
    first = loading(dev_cluster, namespace, "podgone")
    # Killed at once through containerd, as a crash would: a deleted pod gets a grace period, and a
    # tiny model's run ends within it.
    pod = next(p for p in pods(dev_cluster, namespace, job_pods("podgone")) if p["metadata"]["name"] == first)
    dev_cluster.kill_container(pod["status"]["containerStatuses"][0]["containerID"])

    served = ready(dev_cluster, namespace, "podgone")
    assert served["status"]["serving"]["sha256"] == served["status"]["candidate"]["sha256"]
    assert len(jobs(dev_cluster, namespace)) == 1
    attempts = {p["metadata"]["name"]: p["status"].get("phase")
                for p in pods(dev_cluster, namespace, job_pods("podgone"))}
    assert attempts.pop(first) == "Failed" and list(attempts.values()) == ["Succeeded"], attempts
    assert reasons(dev_cluster, namespace, "podgone").count("JobCreated") == 1


def job_pods(name: str) -> str:
    return f"app.kubernetes.io/instance={name},app.kubernetes.io/component=optimizer"


def loading(cluster: DevCluster, namespace: str, name: str) -> str:
    """The Job's pod, once it has read its inputs and loads the source model."""
    return str(wait_for(
        "the Job's pod to load the source model",
        lambda: next((p["metadata"]["name"] for p in pods(cluster, namespace, job_pods(name))
                      if "loading the source model" in logs(cluster, namespace, p["metadata"]["name"])), None),
        timeout=120,
        interval=0.1,
    ))


def test_s3_out_while_the_job_publishes_and_while_a_serving_pod_downloads(
    dev_cluster: DevCluster, namespace: str, s3: str, gate: TcpGate, operator: Operator
) -> None:
    create(dev_cluster, namespace, "outage", gate.endpoint, replicas=2)

    # The Job's pod has read its inputs: from here on, S3 is needed only to publish.
    first = loading(dev_cluster, namespace, "outage")
    gate.close()
    failed = wait_for(
        "the first pod to fail on storage",
        lambda: next((p for p in pods(dev_cluster, namespace, job_pods("outage"))
                      if p["metadata"]["name"] == first and p["status"].get("phase") == "Failed"), None),
        timeout=180,
    )
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3, terminated  # storage: the Job may try again
    assert stored(s3, namespace) == [], "a result was published while S3 was out"
    gate.open()

    served = ready(dev_cluster, namespace, "outage")
    assert len(jobs(dev_cluster, namespace)) == 1
    attempts = pods(dev_cluster, namespace, job_pods("outage"))
    assert sorted(p["status"]["phase"] for p in attempts) == ["Failed", "Succeeded"]
    report = served["status"]["candidate"]
    assert any(key.endswith("report.json") for key in stored(s3, namespace)), stored(s3, namespace)
    assert served["status"]["serving"]["sha256"] == report["sha256"]

    # Serving: S3 goes away, one of the two serving pods is replaced.
    serving = pods(dev_cluster, namespace, SERVING)
    assert len(serving) == 2
    gate.close()
    dev_cluster.kubectl("delete", "pod", "-n", namespace, serving[0]["metadata"]["name"], "--wait=false")
    survivor = serving[1]["metadata"]["name"]

    def replacement() -> dict[str, Any] | None:
        names = {p["metadata"]["name"]: p for p in pods(dev_cluster, namespace, SERVING)}
        fresh = [p for n, p in names.items() if n not in (serving[0]["metadata"]["name"], survivor)]
        return fresh[0] if fresh and "cannot load model" in logs(dev_cluster, namespace, fresh[0]["metadata"]["name"]) \
            else None

    waiting = wait_for("the new serving pod to retry its download", replacement, timeout=120)
    name = waiting["metadata"]["name"]
    time.sleep(10)  # several retries, while the survivor serves
    now = {p["metadata"]["name"]: p for p in pods(dev_cluster, namespace, SERVING)}
    assert not _ready(now[name]), "a pod without its model was ready"
    assert _ready(now[survivor]), "the remaining replica stopped serving"
    deployment = get(dev_cluster, namespace, "deployment", served["status"]["serving"]["deployment"])
    assert deployment["status"].get("availableReplicas", 0) >= 1

    gate.open()
    wait_for(
        "the new pod ready by itself",
        lambda: (p := next((p for p in pods(dev_cluster, namespace, SERVING) if p["metadata"]["name"] == name), None))
        and _ready(p),
        timeout=120,
    )
    pod = next(p for p in pods(dev_cluster, namespace, SERVING) if p["metadata"]["name"] == name)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, "the pod crash-looped instead of retrying"
    after = ready(dev_cluster, namespace, "outage")
    assert after["status"]["serving"]["sha256"] == served["status"]["serving"]["sha256"]
    assert len(jobs(dev_cluster, namespace)) == 1
    assert operator.alive()


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
