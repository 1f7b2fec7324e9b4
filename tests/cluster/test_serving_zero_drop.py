"""Zero dropped requests through the serving Service's ClusterIP while pods come and go.

A client pod on the real node sends a steady stream of predictions to the Service's ClusterIP
(kube-proxy's iptables rules, not a port-forward): two threads reuse keep-alive connections, two
open a new connection per request (each a fresh pick of an endpoint by kube-proxy). Meanwhile the
serving Deployment of two pods (i) rolls out a new model, (ii) loses a pod deleted by hand, and
(iii) scales in to one pod. Every request must be answered 200 with one prediction: a refused or
reset connection, a timeout or any other status is a failure, and none is allowed over at least
5,000 requests. The client's counts are its own (it shares no code with the server).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import Operator, apply, condition, get, manifest, setup_namespace
from tests.support.polling import wait_for

CLIENT = textwrap.dedent("""
    import http.client, json, os, sys, threading, time
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    body = json.dumps({"instances": [[[[0.5]] * 8] * 8]}).encode()
    headers = {"Content-Type": "application/json"}
    counts = {"ok": 0, "failed": 0}
    errors = []
    lock = threading.Lock()

    def record(ok, error=None):
        with lock:
            counts["ok" if ok else "failed"] += 1
            if error and len(errors) < 50:
                errors.append(f"{time.strftime('%H:%M:%S')} {error}")

    def one(conn):
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            return f"HTTP {response.status}: {data[:200]!r}"
        if len(json.loads(data)["predictions"]) != 1:
            return f"bad answer {data[:200]!r}"
        return None

    def stream(keep_alive):
        conn = None
        while not os.path.exists("/ctl/stop"):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=10)
                error = one(conn)
                if not keep_alive or response_closed(conn):
                    conn.close(); conn = None
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn.close()
                conn = None
            record(error is None, error)

    def response_closed(conn):
        return conn.sock is None  # http.client drops the socket after `Connection: close`

    threads = [threading.Thread(target=stream, args=(keep,)) for keep in (True, True, False, False)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        with lock:
            print(json.dumps(counts), flush=True)
        time.sleep(1)
    print(json.dumps({**counts, "errors": errors, "done": True}), flush=True)
""")


def client_pod(cluster: DevCluster, host: str, port: int, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "load"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "load",
                    "image": cluster.images["serve"],
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", CLIENT, host, str(port), path],
                    "volumeMounts": [{"name": "ctl", "mountPath": "/ctl"}],
                }
            ],
            "volumes": [{"name": "ctl", "emptyDir": {}}],
        },
    }


def last_counts(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    lines = cluster.kubectl("logs", "-n", namespace, "load", check=False).stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"ok": 0, "failed": 0}


def serving_pods(cluster: DevCluster, namespace: str) -> list[dict[str, Any]]:
    pods = get(cluster, namespace, "pods", "-l", "app.kubernetes.io/component=serving")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def all_pods(cluster: DevCluster, namespace: str) -> int:
    return len(get(cluster, namespace, "pods", "-l", "app.kubernetes.io/component=serving")["items"])


@pytest.fixture
def model(dev_cluster: DevCluster, s3: str, operator: Operator, namespace: str) -> Iterator[dict[str, Any]]:
    setup_namespace(dev_cluster, namespace)
    yield manifest("digits", s3)


def ready(cluster: DevCluster, namespace: str) -> dict[str, Any] | None:
    body = get(cluster, namespace, "om", "digits")
    return body if condition(body, "Ready").get("status") == "True" else None


def patch(cluster: DevCluster, namespace: str, spec: dict[str, Any]) -> None:
    cluster.kubectl("patch", "om", "digits", "-n", namespace, "--type", "merge", "-p", json.dumps({"spec": spec}))


@pytest.mark.parametrize("workers", [1, 2])
def test_no_request_fails_during_rollout_pod_deletion_and_scale_in(
    dev_cluster: DevCluster, model: dict[str, Any], namespace: str, workers: int
) -> None:
    model["spec"]["serving"] = {"replicas": 2, "workers": workers, "interpreters": 1}
    apply(dev_cluster, namespace, model)
    first = wait_for("the first model Ready on 2 pods", lambda: ready(dev_cluster, namespace), timeout=400)
    service = get(dev_cluster, namespace, "service", first["status"]["serving"]["service"])
    ip, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    apply(dev_cluster, namespace, client_pod(dev_cluster, ip, port, "/v1/models/digits:predict"))
    wait_for("the stream flowing", lambda: last_counts(dev_cluster, namespace)["ok"] >= 500, timeout=120)

    # (i) A new model rolls out over both pods (maxSurge 1: one pod at a time).
    patch(dev_cluster, namespace, {"source": {"uri": "s3://models/digits/2/model.h5"}})

    def second_served() -> bool:
        body = ready(dev_cluster, namespace)
        serving = (body or {}).get("status", {}).get("serving") or {}
        return bool(body) and serving.get("key") not in (None, first["status"]["serving"]["key"])

    try:
        wait_for("the second model served", second_served, timeout=600)
    except AssertionError as error:
        status = get(dev_cluster, namespace, "om", "digits")["status"]
        raise AssertionError(f"{error}: {status['phase']}: {status['message']}") from None
    wait_for("the old pods gone", lambda: all_pods(dev_cluster, namespace) == 2, timeout=120)
    after_rollout = last_counts(dev_cluster, namespace)

    # (ii) A serving pod deleted by hand: the other keeps serving, the replacement joins.
    victim = serving_pods(dev_cluster, namespace)[0]["metadata"]["name"]
    dev_cluster.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")
    wait_for("the deleted pod gone", lambda: victim not in [
        p["metadata"]["name"] for p in get(dev_cluster, namespace, "pods")["items"]], timeout=120)  # fmt: skip
    wait_for("the Model Ready again on 2 pods", lambda: ready(dev_cluster, namespace), timeout=120)

    # (iii) Scale in to one pod.
    patch(dev_cluster, namespace, {"serving": {"replicas": 1}})
    wait_for("one pod left", lambda: all_pods(dev_cluster, namespace) == 1, timeout=120)
    wait_for("a few more answers", lambda: last_counts(dev_cluster, namespace)["ok"] >= after_rollout["ok"] + 500)

    dev_cluster.kubectl("exec", "-n", namespace, "load", "--", "python", "-c", "open('/ctl/stop', 'w').close()")
    done = wait_for(
        "the client's summary", lambda: (c := last_counts(dev_cluster, namespace)).get("done") and c, timeout=60
    )
    print(f"workers={workers}: {done['ok']} answered, {done['failed']} failed; {done['errors'][:5]}")
    assert done["ok"] >= 5000
    assert (done["failed"], done["errors"]) == (0, [])
