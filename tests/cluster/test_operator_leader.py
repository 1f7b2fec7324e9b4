"""High availability: two operators on one Lease, only the leader acts, the other takes over.

Both are real `optimodel operator` processes against the real API server, electing on a
coordination.k8s.io Lease in the test's namespace. The oracles are the API server's own objects
(the Lease's holder, the Jobs, the Events) and each operator's count of reconciles: the standby
must have run none while the leader reconciled. The leader is killed with SIGKILL while its Job
runs, so it cannot hand the Lease back: the standby must wait the Lease out, take it within 30 s
and finish the story with the one Job the first leader created.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

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

LEASE = "optimodel-operator"


def holder_pid(cluster: DevCluster, namespace: str) -> int | None:
    """The process id in the Lease's holder identity (`host_pid_random`), None when nobody holds it."""
    lease = get(cluster, namespace, "lease", LEASE)
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return int(holder.split("_")[-2]) if holder else None


def pid(operator: Operator) -> int:
    assert operator.proc is not None
    return operator.proc.pid


def test_only_the_leader_acts_and_a_killed_leader_is_replaced_within_30_s(
    dev_cluster: DevCluster, s3: str, namespace: str, tmp_path: Path
) -> None:
    setup_namespace(dev_cluster, namespace)
    env = {"OPTIMODEL_LEASE_NAMESPACE": namespace}
    with running_operator(dev_cluster, tmp_path / "first.log", env) as first:
        wait_for("the first operator to lead", lambda: holder_pid(dev_cluster, namespace) == pid(first), timeout=60)
        with running_operator(dev_cluster, tmp_path / "second.log", env) as second:
            # The second one runs and stands by (its /metrics answers: a 0 below is a count, not silence).
            wait_for("the second operator standing by", lambda: second.leading() is False, timeout=60)
            assert first.leading() is True

            apply(dev_cluster, namespace, manifest("digits", s3))
            job = wait_for(
                "the Job running",
                lambda: (j := get(dev_cluster, namespace, "jobs"))["items"]
                and j["items"][0]["status"].get("active")
                and j["items"][0]["metadata"]["name"],
                timeout=120,
            )
            first.wait_for_reconciles(2)
            assert second.reconciles() == 0 and second.alive() and second.leading() is False
            assert jobs(dev_cluster, namespace) == [job]

            assert first.proc is not None
            first.proc.kill()  # no release of the Lease: the standby must wait it out
            first.proc.wait()
            killed = time.monotonic()
            wait_for(
                "the second operator to lead", lambda: holder_pid(dev_cluster, namespace) == pid(second), timeout=30
            )
            handover = time.monotonic() - killed
            print(f"handover after SIGKILL of the leader: {handover:.1f} s")
            assert wait_for("the new leader's metric", lambda: second.leading(), timeout=10)

            def ready() -> bool:
                return condition(get(dev_cluster, namespace, "om", "digits"), "Ready").get("status") == "True"

            wait_for("the model Ready under the new leader", ready, timeout=400)
            assert second.reconciles() > 0
            assert jobs(dev_cluster, namespace) == [job]  # the new leader found the Job, created none
            om = get(dev_cluster, namespace, "om", "digits")
            assert om["status"]["jobName"] == job and condition(om, "Optimized")["reason"] == "ResultStored"

            # Every Event once: the new leader reads the transitions the old one recorded in status.
            items = get(dev_cluster, namespace, "events")["items"]
            posted = Counter(
                (e["reason"], e["message"]) for e in items if e["involvedObject"].get("kind") == "OptimizedModel"
                for _ in range(e.get("count") or 1)
            )
            assert posted[("JobCreated", f"created Job {job}")] == 1, posted
            assert {"JobCreated", "RolloutStarted", "Available"} <= {reason for reason, _ in posted}, posted
            assert [key for key, count in posted.items() if count > 1] == [], posted
