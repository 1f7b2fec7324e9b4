"""Retrying a failed Job with `optimodel.io/retry-requested-at`, end to end on the local control plane.

A Job fails for a reason the user can fix (its calibration data is missing in S3); the user uploads
the object and annotates the resource; a new Job runs the same recipe and the result is stored.
The operator runs with a resync interval longer than the test, so only its reaction to the
annotation can start the new Job: kopf's update diff leaves `optimodel.io/` annotations out (its own
prefix), and this test is what shows the retry is caught anyway.

The tiny models, the moto server on the host address and the operator runner come from `operator_kit`.
"""

from __future__ import annotations

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

RETRY = "optimodel.io/retry-requested-at"


@pytest.fixture(scope="module")
def operator(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The operator with no resync within the test: only events can make it act."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(dev_cluster, log, env={"OPTIMODEL_RESYNC_SECONDS": "3600"}) as runner:
        yield runner


def om(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "om", "retry") or {})


def events(cluster: DevCluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in get(cluster, namespace, "events")["items"] if e["reason"] == reason]


def annotate(cluster: DevCluster, namespace: str, *pairs: str) -> None:
    cluster.kubectl("annotate", "om", "retry", "-n", namespace, *pairs, "--overwrite")


def test_a_failed_job_is_retried_once_per_request(
    dev_cluster: DevCluster,
    namespace: str,
    s3: str,
    operator: Operator,
) -> None:
    setup_namespace(dev_cluster, namespace)
    calibration = f"{namespace}/calibration.npz"  # not uploaded yet: the Job fails on it
    body = manifest("retry", s3)
    body["spec"]["optimization"]["quantization"]["calibrationData"] = f"s3://datasets/{calibration}"
    body["spec"]["artifacts"]["uri"] = f"s3://artifacts/{namespace}/"
    body["spec"]["serving"]["replicas"] = 0  # Ready without a serving pod: the retry is what is tested
    apply(dev_cluster, namespace, body)

    stalled = wait_for(
        "Stalled=True",
        lambda: (b := om(dev_cluster, namespace)) and condition(b, "Stalled").get("status") == "True" and b,
        timeout=180,
    )
    [first] = jobs(dev_cluster, namespace)
    assert condition(stalled, "Stalled")["reason"] == "JobFailed", stalled["status"]
    message = stalled["status"]["message"]
    assert f"s3://datasets/{calibration}" in message and "(ObjectNotFound)" in message, message
    assert f'kubectl -n {namespace} annotate om retry {RETRY}="$(date +%s)" --overwrite' in message, message
    assert "lastHandledRetryAt" not in stalled["status"]

    # Fix the input, then ask for a retry.
    client = boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    client.copy_object(
        Bucket="datasets", Key=calibration, CopySource={"Bucket": "datasets", "Key": "digits/calibration.npz"}
    )
    annotate(dev_cluster, namespace, f"{RETRY}=first")

    running = wait_for(
        "Reconciling=True on the new Job",
        lambda: (
            (b := om(dev_cluster, namespace))
            and condition(b, "Reconciling").get("status") == "True"
            and b["status"].get("jobName") == f"{first}-2"
            and b
        ),
        timeout=60,
    )
    assert running["status"]["lastHandledRetryAt"] == "first" and running["status"]["phase"] == "Optimizing"
    assert condition(running, "Stalled")["status"] == "False"
    [requested] = events(dev_cluster, namespace, "RetryRequested")
    assert requested["type"] == "Normal"
    assert f"Job {first}-2 replaces the failed Job {first}" in requested["message"], requested["message"]

    ready = wait_for(
        "Ready=True after the retry",
        lambda: (b := om(dev_cluster, namespace)) and condition(b, "Ready").get("status") == "True" and b,
        timeout=180,
    )
    assert condition(ready, "Optimized")["reason"] == "ResultStored"  # computed by the retry, not reused
    assert ready["status"]["candidate"]["reportUri"].startswith(f"s3://artifacts/{namespace}/")
    assert sorted(jobs(dev_cluster, namespace)) == [first, f"{first}-2"]
    failed = get(dev_cluster, namespace, "job", first)  # kept for its logs, beside the new attempt
    assert any(c["type"] == "Failed" and c["status"] == "True" for c in failed["status"]["conditions"])
    key = ready["status"]["candidate"]["key"]

    # The same value again, with a change kopf does see: the update is handled, nothing is retried.
    annotate(dev_cluster, namespace, f"{RETRY}=first", "example.com/touched=yes")
    wait_for(
        "kopf to handle the update",
        lambda: "example.com/touched" in om(dev_cluster, namespace)["metadata"]["annotations"].get(
            "optimodel.io/last-handled-configuration", ""
        ),
        timeout=30,
    )
    assert sorted(jobs(dev_cluster, namespace)) == [first, f"{first}-2"]
    assert len(events(dev_cluster, namespace, "RetryRequested")) == 1

    # A new request after success is recorded and ignored: the stored result is not recomputed.
    annotate(dev_cluster, namespace, f"{RETRY}=second")
    after = wait_for(
        "the second request recorded",
        lambda: (b := om(dev_cluster, namespace)) and b["status"].get("lastHandledRetryAt") == "second" and b,
        timeout=30,
    )
    assert sorted(jobs(dev_cluster, namespace)) == [first, f"{first}-2"]
    assert after["status"]["candidate"]["key"] == key and condition(after, "Ready")["status"] == "True"
    [ignored] = events(dev_cluster, namespace, "RetryIgnored")
    assert "stored for the current recipe" in ignored["message"], ignored["message"]
    assert len(events(dev_cluster, namespace, "RetryRequested")) == 1
    assert operator.alive()
