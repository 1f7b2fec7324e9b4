"""A failed Job deleted by its TTL is not run again: `status.failedJob` stands in for it.

Before, the operator saw no Job and no stored result once the TTL controller had deleted the failed
Job, and created the same failing Job again (every `OPTIMODEL_JOB_TTL_SECONDS`, a day by default).
Here the TTL is one second: the Job fails on missing calibration data, the TTL controller deletes
it, a change kopf sees makes the operator reconcile, and no Job is created; the resource stays
Failed with the same message. A retry request then starts the next attempt.
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
    """Finished Jobs deleted 5 s after they end; no resync within the test. Not sooner: the operator
    reads the failed pod's termination message (the reason status names) after the Job's event,
    and on a loaded machine a 1-s TTL sometimes deleted the pod first (the reason was then the Job
    condition's, PodFailurePolicy)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {"OPTIMODEL_RESYNC_SECONDS": "3600", "OPTIMODEL_JOB_TTL_SECONDS": "5"}
    with running_operator(dev_cluster, log, env=env) as runner:
        yield runner


def om(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "om", "ttl") or {})


def test_a_failed_job_deleted_by_its_ttl_is_not_run_again(
    dev_cluster: DevCluster,
    namespace: str,
    s3: str,
    operator: Operator,
) -> None:
    setup_namespace(dev_cluster, namespace)
    calibration = f"{namespace}/calibration.npz"  # not uploaded: the Job fails on it
    body = manifest("ttl", s3)
    body["spec"]["optimization"]["quantization"]["calibrationData"] = f"s3://datasets/{calibration}"
    body["spec"]["artifacts"]["uri"] = f"s3://artifacts/{namespace}/"
    body["spec"]["serving"]["replicas"] = 0
    apply(dev_cluster, namespace, body)

    stalled = wait_for(
        "Stalled=True with status.failedJob",
        lambda: (b := om(dev_cluster, namespace)) and (b.get("status") or {}).get("failedJob") and b,
        timeout=180,
    )
    first = stalled["status"]["failedJob"]["job"]
    assert stalled["status"]["failedJob"]["reason"] == "ObjectNotFound", stalled["status"]
    assert condition(stalled, "Stalled")["reason"] == "JobFailed"

    wait_for("the TTL controller to delete the failed Job", lambda: jobs(dev_cluster, namespace) == [], timeout=60)
    dev_cluster.kubectl("annotate", "om", "ttl", "-n", namespace, "example.com/touched=yes", "--overwrite")
    wait_for(
        "a reconcile after the Job was deleted",
        lambda: "example.com/touched" in om(dev_cluster, namespace)["metadata"]["annotations"].get(
            "optimodel.io/last-handled-configuration", ""
        ),
        timeout=30,
    )
    after = om(dev_cluster, namespace)
    assert jobs(dev_cluster, namespace) == [], "the failed recipe ran again"
    assert after["status"]["phase"] == "Failed"
    assert condition(after, "Stalled")["reason"] == "JobFailed"
    assert "(ObjectNotFound)" in after["status"]["message"], after["status"]["message"]
    assert after["status"]["failedJob"]["job"] == first

    # Fix the input and ask for a retry: the next attempt starts although the first Job is gone.
    client = boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    client.copy_object(
        Bucket="datasets", Key=calibration, CopySource={"Bucket": "datasets", "Key": "digits/calibration.npz"}
    )
    dev_cluster.kubectl("annotate", "om", "ttl", "-n", namespace, f"{RETRY}=after-ttl", "--overwrite")
    wait_for("the retry's Job", lambda: f"{first}-2" in jobs(dev_cluster, namespace), timeout=60)
