"""The operator end to end on the local control plane: real Jobs, real S3 (moto), real serving pods.

One story on one resource (apply, restart the operator mid-Job, serve, tighten a gate, new source
version, delete) plus runtime bad input. Models are tiny (a 64-unit dense net on 8x8 digits), so
each Job takes seconds.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import (
    Operator,
    apply,
    condition,
    get,
    jobs,
    manifest,
    setup_namespace,
)
from tests.support.polling import wait_for


def events(cluster: DevCluster, namespace: str) -> set[str]:
    return {e["reason"] for e in get(cluster, namespace, "events")["items"]}


def predict(cluster: DevCluster, namespace: str, x: np.ndarray) -> list[int]:
    pods = get(cluster, namespace, "pods", "-l", "app.kubernetes.io/component=serving")["items"]
    ip = next(p["status"]["podIP"] for p in pods if p["status"].get("podIP") and p["status"]["phase"] == "Running")
    meta = json.loads(urllib.request.urlopen(f"http://{ip}:8501/v2/models/digits", timeout=10).read())
    body = {
        "inputs": [
            {"name": meta["inputs"][0]["name"], "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    request = urllib.request.Request(
        f"http://{ip}:8501/v2/models/digits/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    output = json.loads(urllib.request.urlopen(request, timeout=10).read())["outputs"][0]
    return np.asarray(output["data"]).reshape(output["shape"]).argmax(axis=1).tolist()


def scrape_as_prometheus_would(cluster: DevCluster, namespace: str) -> str:
    """The serving pod's metrics, found the way annotation-based discovery finds them."""
    pods = get(cluster, namespace, "pods", "-l", "app.kubernetes.io/component=serving")["items"]
    pod = next(p for p in pods if p["status"].get("podIP") and p["status"]["phase"] == "Running")
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    url = f"http://{pod['status']['podIP']}:{annotations['prometheus.io/port']}{annotations['prometheus.io/path']}"
    return urllib.request.urlopen(url, timeout=10).read().decode()


def active_jobs(cluster: DevCluster, namespace: str) -> list[str]:
    """Jobs with a pod active: created, not finished."""
    return [j["metadata"]["name"] for j in get(cluster, namespace, "jobs")["items"] if j["status"].get("active")]


def served_sha(cluster: DevCluster, namespace: str) -> str:
    deployment = get(cluster, namespace, "deployment", "digits-serving")
    return str(deployment["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"])


def test_digits_story(dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator) -> None:
    setup_namespace(dev_cluster, namespace)
    apply(dev_cluster, namespace, manifest("digits", s3))

    # Restart the operator while the Job runs: no second Job, and the story goes on.
    first_job = wait_for("the Job active", lambda: active_jobs(dev_cluster, namespace), timeout=60)
    operator.stop()
    operator.start()
    assert active_jobs(dev_cluster, namespace) == first_job, "the Job finished before the operator restarted"
    om = wait_for(
        "Ready",
        lambda: (
            (b := get(dev_cluster, namespace, "om", "digits")) and condition(b, "Ready").get("status") == "True" and b
        ),
        timeout=240,
    )
    assert jobs(dev_cluster, namespace) == first_job
    status = om["status"]
    assert status["phase"] == "Ready" and status["observedGeneration"] == om["metadata"]["generation"]
    assert [g["passed"] for g in status["gates"]] == [True, True, True] and status["gatesSummary"] == "3/3"
    assert status["candidate"]["sizeRatio"] < 0.5 and status["serving"]["ready"] == "1/1"
    assert condition(om, "Optimized")["reason"] == "ResultStored" and status["jobName"] == first_job[0]
    assert {"JobCreated", "RolloutStarted", "Available"} <= events(dev_cluster, namespace)
    dev_cluster.kubectl("wait", "--for=condition=Ready", "om/digits", "-n", namespace, "--timeout=10s")

    # The serving pod answers with the right classes.
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[1400:1420] / 16.0).astype("float32")[..., None]
    predicted = predict(dev_cluster, namespace, x)
    assert sum(p == t for p, t in zip(predicted, digits.target[1400:1420], strict=True)) >= 17
    assert 'optimodel_requests_total{code="200",protocol="v2",route="/v2/models/{name}/infer"}' in (
        scrape_as_prometheus_would(dev_cluster, namespace)
    )
    first_sha = served_sha(dev_cluster, namespace)
    serving = get(dev_cluster, namespace, "om", "digits")["status"]["serving"]
    service = get(dev_cluster, namespace, "service", serving["service"])
    assert serving["url"] == f"http://{serving['service']}.{namespace}.svc:{service['spec']['ports'][0]['port']}"

    # Tighten a gate: no new Job, the old model keeps serving, status names the gate and the numbers.
    apply(dev_cluster, namespace, manifest("digits", s3, maxSizeRatio=0.01))
    om = wait_for(
        "GatesPassed=False",
        lambda: (
            (b := get(dev_cluster, namespace, "om", "digits"))
            and condition(b, "GatesPassed").get("status") == "False"
            and b
        ),
        timeout=30,
    )
    message = condition(om, "GatesPassed")["message"]
    assert "maxSizeRatio: actual" in message and "vs threshold 0.01" in message, message
    assert om["status"]["phase"] == "GatesFailed" and condition(om, "Stalled")["status"] == "True"
    assert jobs(dev_cluster, namespace) == first_job and served_sha(dev_cluster, namespace) == first_sha
    assert "GatesFailed" in events(dev_cluster, namespace)

    # A new source version that passes rolls out.
    apply(dev_cluster, namespace, manifest("digits", s3, source="s3://models/digits/2/model.h5"))
    wait_for("the new model served", lambda: served_sha(dev_cluster, namespace) != first_sha, timeout=240)
    om = wait_for(
        "Ready again",
        lambda: (
            (b := get(dev_cluster, namespace, "om", "digits"))
            and condition(b, "Ready").get("status") == "True"
            and b["status"]["serving"]["sha256"] != first_sha
            and b
        ),
        timeout=120,
    )
    assert len(jobs(dev_cluster, namespace)) == 2

    # The same recipe in another namespace reuses the stored result: no Job there.
    other = f"{namespace}-b"
    dev_cluster.kubectl("create", "namespace", other)
    try:
        setup_namespace(dev_cluster, other)
        apply(dev_cluster, other, manifest("digits", s3, source="s3://models/digits/2/model.h5"))
        cached = wait_for(
            "cache hit",
            lambda: (
                (b := get(dev_cluster, other, "om", "digits"))
                and condition(b, "Optimized").get("status") == "True"
                and b
            ),
            timeout=30,
        )
        assert condition(cached, "Optimized")["reason"] == "CacheHit" and jobs(dev_cluster, other) == []
    finally:
        dev_cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)

    # Delete: the children go with their owner.
    dev_cluster.kubectl("delete", "om", "digits", "-n", namespace)
    wait_for(
        "children gone",
        lambda: (
            not jobs(dev_cluster, namespace) and get(dev_cluster, namespace, "deployment", "digits-serving") is None
        ),
        timeout=60,
    )
    assert operator.alive()


def test_a_search_in_the_job_serves_the_chosen_candidate(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator
) -> None:
    """`method: auto` runs in the Job as in `optimodel run`; status and `-o wide` show the choice."""
    setup_namespace(dev_cluster, namespace)
    # This architecture converts to about 11.6 kB as float16 and 9.2 kB as dynamic range.
    search = manifest("digits", s3, maxSizeBytes=10_400, maxMetricDrop=0.05)
    search["spec"]["optimization"] = {"method": "auto", "candidates": ["float16", "dynamic"]}
    apply(dev_cluster, namespace, search)

    om = wait_for(
        "Ready",
        lambda: (
            (b := get(dev_cluster, namespace, "om", "digits")) and condition(b, "Ready").get("status") == "True" and b
        ),
        timeout=180,
    )

    candidate = om["status"]["candidate"]
    assert (candidate["method"], candidate["chosen"], candidate["tried"]) == ("auto", "dynamic", 2)
    assert candidate["sizeBytes"] <= 10_400 and served_sha(dev_cluster, namespace) == candidate["sha256"]
    header, row = dev_cluster.kubectl("get", "om", "digits", "-n", namespace, "-o", "wide").stdout.splitlines()
    starts = [header.index(name) for name in header.split()] + [None]
    columns = {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, starts[1:], strict=False)}
    assert (columns["CHOSEN"], columns["TRIED"], columns["PHASE"]) == ("dynamic", "2", "Ready")


def test_runtime_bad_input_stalls_without_a_crash_loop(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator
) -> None:
    setup_namespace(dev_cluster, namespace)
    apply(dev_cluster, namespace, manifest("missing", s3, source="s3://models/nothing/model.h5"))
    apply(dev_cluster, namespace, manifest("broken", s3, source="s3://models/broken/model.h5"))
    missing = wait_for(
        "missing source stalls",
        lambda: (
            (b := get(dev_cluster, namespace, "om", "missing"))
            and condition(b, "Stalled").get("status") == "True"
            and b
        ),
        timeout=60,
    )
    assert condition(missing, "Stalled")["reason"] == "SourceNotFound"
    assert "s3://models/nothing/model.h5" in condition(missing, "Ready")["message"]
    try:
        broken = wait_for(
            "corrupt model stalls",
            lambda: (
                (b := get(dev_cluster, namespace, "om", "broken"))
                and condition(b, "Stalled").get("status") == "True"
                and b
            ),
            timeout=120,
        )
    except AssertionError:
        print(json.dumps(get(dev_cluster, namespace, "om", "broken")["status"], indent=1))
        print(json.dumps(get(dev_cluster, namespace, "jobs")["items"][0].get("status"), indent=1))
        print(json.dumps([p.get("status") for p in get(dev_cluster, namespace, "pods")["items"]], indent=1)[:4000])
        raise
    assert condition(broken, "Stalled")["reason"] == "JobFailed", broken["status"]
    assert broken["status"]["phase"] == "Failed"
    assert "(InvalidInput)" in broken["status"]["message"], broken["status"]["message"]
    assert {"SourceNotFound", "JobFailed"} <= events(dev_cluster, namespace)
    job_count = len(jobs(dev_cluster, namespace))
    # Both resources resync every 10 s (and end "ok": stalled is a result, not an error): four more
    # reconciles are two rounds of resyncs that had the chance to create a Job and did not.
    operator.wait_for_reconciles(4, result="ok", timeout=60)
    assert len(jobs(dev_cluster, namespace)) == job_count == 1
    assert operator.alive()
