"""One tenant's silent S3 endpoint cannot stall the others, and nobody's serving names are taken over.

Fairness: eight resources in one namespace name an endpoint that accepts connections and never
answers; a ninth, in another namespace, names the working S3 server and must still be optimized and
Ready in the time it takes alone. Each reconcile of the eight holds a thread for the operator's S3
deadline at most, and a namespace holds at most OPTIMODEL_NAMESPACE_WORKERS of the operator's
threads: the others wait their turn without one. Before that bound, the eight held all eight threads
for minutes.

Ownership: a Service named like a resource's serving Service, made by someone else, is never
adopted: the resource stalls with `ObjectInTheWay` naming it, and the Service is left as it was.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import (
    Operator,
    apply,
    condition,
    get,
    manifest,
    running_operator,
    setup_namespace,
)
from tests.support.polling import wait_for
from tests.support.s3server import free_port

TENANTS = 8
ALONE_SECONDS = 150  # a tiny model's Job, rollout included, on this 2-core machine, with room to spare


class Silent:
    """An endpoint that accepts connections, counts them and never says a word."""

    def __init__(self, host: str) -> None:
        self.listener = socket.socket()
        self.listener.bind((host, free_port(host)))
        self.listener.listen(256)
        self.endpoint = f"http://{host}:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def silent(dev_cluster: DevCluster) -> Iterator[Silent]:
    server = Silent(dev_cluster.host_ip)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def operator(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The chart's defaults for threads (8) and per-namespace share (2)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {"OPTIMODEL_WORKERS": "8", "OPTIMODEL_NAMESPACE_WORKERS": "2", "OPTIMODEL_RETRY_SECONDS": "5"}
    with running_operator(dev_cluster, log, env) as runner:
        yield runner


@pytest.fixture
def other_namespace(dev_cluster: DevCluster) -> Iterator[str]:
    name = f"t-slow-{int(time.time() * 1000) % 10**8}"
    dev_cluster.kubectl("create", "namespace", name)
    yield name
    dev_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def diagnose(cluster: DevCluster, namespace: str) -> str:
    """What the resource, its pods and their logs say, for a failure message."""
    status = (get(cluster, namespace, "om", "fast") or {}).get("status")
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    logs = cluster.kubectl("logs", "-n", namespace, "-l", "app.kubernetes.io/component=serving", "--tail=20",
                           check=False).stdout
    return f"status: {status}\npods:\n{pods}\nserving logs:\n{logs}"


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    copied["metadata"]["name"] = name
    return copied


def test_a_silent_endpoint_in_one_namespace_does_not_stall_another(
    dev_cluster: DevCluster, namespace: str, other_namespace: str, s3: str, silent: Silent, operator: Operator
) -> None:
    setup_namespace(dev_cluster, other_namespace)
    setup_namespace(dev_cluster, namespace)
    slow = manifest("slow", silent.endpoint)
    for i in range(TENANTS):
        apply(dev_cluster, other_namespace, named(slow, f"slow-{i}"))
    # The eight are being reconciled: their first calls wait on the silent endpoint.
    wait_for("the slow tenant's reconciles to reach its endpoint", lambda: len(silent.held) >= 2, timeout=60)
    started = time.monotonic()
    apply(dev_cluster, namespace, manifest("fast", s3))
    optimized = wait_for(
        "the other namespace's resource to be optimized",
        lambda: (b := get(dev_cluster, namespace, "om", "fast")) and condition(b, "Optimized").get("status") == "True",
        timeout=ALONE_SECONDS,
    )
    assert optimized, diagnose(dev_cluster, namespace)
    try:
        wait_for(
            "Ready=True",
            lambda: condition(get(dev_cluster, namespace, "om", "fast"), "Ready").get("status") == "True",
            timeout=ALONE_SECONDS,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{diagnose(dev_cluster, namespace)}") from None
    print(f"ninth resource Ready in {time.monotonic() - started:.1f} s beside {TENANTS} silent ones")
    # The slow ones say what is wrong, in our words, and the operator is still there.
    slow_status = wait_for(
        "a slow resource to report its endpoint",
        lambda: (b := get(dev_cluster, other_namespace, "om", "slow-0")) and condition(b, "Optimized").get("reason"),
        timeout=120,
    )
    assert slow_status == "StorageUnavailable"
    assert operator.alive()


def test_a_service_of_someone_else_is_never_adopted(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Operator
) -> None:
    setup_namespace(dev_cluster, namespace)
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api-serving", "namespace": namespace, "labels": {"team": "web"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    dev_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(theirs))
    before = get(dev_cluster, namespace, "service", "api-serving")
    apply(dev_cluster, namespace, manifest("api", s3))
    stalled = wait_for(
        "ObjectInTheWay",
        lambda: (b := get(dev_cluster, namespace, "om", "api"))
        and condition(b, "Optimized").get("reason") == "ObjectInTheWay" and b,
        timeout=60,
    )
    assert "Service api-serving" in condition(stalled, "Optimized")["message"]
    after = get(dev_cluster, namespace, "service", "api-serving")
    assert after["spec"]["selector"] == {"app": "web"} and not after["metadata"].get("ownerReferences")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not get(dev_cluster, namespace, "jobs")["items"]  # nothing ran on its behalf either
