"""`spec.artifacts.deletionPolicy` end to end: real Jobs, real S3 (moto with authentication on).

- Delete removes every recipe pointer and result the resource stored (earlier source versions too)
  and nothing else under the prefix.
- What another resource still uses (the same recipe in another namespace, a CacheHit) is kept, and
  its serving pods keep starting; Retain removes nothing.
- Storage refusing the credentials or unreachable at delete time: the resource stays Terminating
  with a Warning Event that says why and how to give up, retries with backoff and finishes once
  storage is back; switching to Retain lets it go.
- Deleting the namespace takes the credentials Secret first: the operator uses the credentials it
  last used, and with none (it was down) keeps the results rather than block the namespace forever.

The models are the tiny ones of the e2e story (a 64-unit dense net on 8x8 digits); most resources
serve with `replicas: 0`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import (
    TINY_MODELS,
    Operator,
    apply,
    condition,
    get,
    jobs,
    manifest,
    running_operator,
    secret_yaml,
)
from tests.support.polling import wait_for
from tests.support.s3server import S3Server, start_s3_server
from tests.support.tcpgate import TcpGate


@pytest.fixture(scope="module")
def s3(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto with authentication on, on the host's address on the node's link, with the e2e story's models and data."""
    work = tmp_path_factory.mktemp("deletion")
    trainer = subprocess.Popen([sys.executable, "-c", TINY_MODELS, str(work)])  # trains while moto starts
    server = start_s3_server(dev_cluster.host_ip, work / "moto.log")
    try:
        assert trainer.wait(timeout=300) == 0, "training the tiny models failed"
        for version in (1, 2):
            server.upload(work / f"model-v{version}.h5", f"s3://models/digits/{version}/model.h5")
        for name in ("test", "calibration"):
            server.upload(work / f"{name}.npz", f"s3://datasets/digits/{name}.npz")
        yield server
    finally:
        trainer.kill()
        server.stop()


@pytest.fixture(scope="module")
def operator(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """`optimodel operator -A`, retrying after 5 s (doubling for a blocked deletion)."""
    with running_operator(dev_cluster, tmp_path_factory.mktemp("operator") / "operator.log") as runner:
        yield runner


def model(
    name: str,
    endpoint: str,
    prefix: str,
    policy: str | None = None,
    replicas: int = 0,
    source: str = "s3://models/digits/1/model.h5",
) -> dict[str, Any]:
    body = manifest(name, endpoint, source=source)
    body["spec"]["artifacts"]["uri"] = f"s3://artifacts/{prefix}/"
    if policy is not None:
        body["spec"]["artifacts"]["deletionPolicy"] = policy
    body["spec"]["serving"]["replicas"] = replicas
    return body


def credentials(cluster: DevCluster, namespace: str, s3: S3Server, right: bool = True) -> None:
    key_id, secret = (s3.access_key, s3.secret_key) if right else (f"AKIAWRONG{uuid.uuid4().hex[:11].upper()}", "no")
    cluster.kubectl("apply", "-f", "-", input=secret_yaml(namespace, key_id, secret))


def stored(s3: S3Server, prefix: str) -> set[str]:
    """Every object under s3://artifacts/<prefix>/, relative to it (boto3, not the operator)."""
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket="artifacts", Prefix=f"{prefix}/")
    return {item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", [])}


def result_objects(key: str, recipe_key: str) -> set[str]:
    return {f"{key}/model.tflite", f"{key}/report.json", f"recipes/{recipe_key}.json"}


def ready(cluster: DevCluster, namespace: str, name: str, timeout: float = 240) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body = get(cluster, namespace, "om", name)
        return dict(body) if body and condition(body, "Ready").get("status") == "True" else None

    return wait_for(f"{namespace}/{name} Ready", probe, timeout=timeout)


def gone(cluster: DevCluster, namespace: str, what: str, timeout: float = 60) -> None:
    wait_for(f"{namespace}/{what} gone", lambda: get(cluster, namespace, *what.split("/")) is None, timeout=timeout)


def delete(cluster: DevCluster, namespace: str, name: str) -> None:
    cluster.kubectl("delete", "om", name, "-n", namespace, "--timeout=60s")


def events(cluster: DevCluster, namespace: str, reason: str, name: str | None = None) -> list[dict[str, Any]]:
    items = get(cluster, namespace, "events")["items"]
    return [e for e in items if e["reason"] == reason and name in (None, e["involvedObject"]["name"])]


def messages(cluster: DevCluster, namespace: str, reason: str, name: str | None = None) -> str:
    return "\n".join(e["message"] for e in events(cluster, namespace, reason, name))


def posted(cluster: DevCluster, namespace: str, reason: str, name: str, text: str, timeout: float = 30) -> str:
    """The messages of `reason` Events on `name` once one contains `text` (Events are posted asynchronously)."""

    def probe() -> str | None:
        found = messages(cluster, namespace, reason, name)
        return found if text in found else None

    return wait_for(f"a {reason} Event on {namespace}/{name} saying {text!r}", probe, timeout=timeout)


def serving_pod(cluster: DevCluster, namespace: str) -> dict[str, Any] | None:
    pods = get(cluster, namespace, "pods", "-l", "app.kubernetes.io/component=serving")["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    ok = [p for p in running if all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]
    return ok[0] if ok else None


def test_delete_keeps_what_other_resources_use_and_retain_removes_nothing(
    dev_cluster: DevCluster, namespace: str, s3: S3Server, operator: Operator
) -> None:
    other = f"{namespace}-b"
    dev_cluster.kubectl("create", "namespace", other)
    try:
        credentials(dev_cluster, namespace, s3)
        credentials(dev_cluster, other, s3)
        apply(dev_cluster, namespace, model("digits", s3.endpoint, "shared", policy="Delete"))
        first = ready(dev_cluster, namespace, "digits")
        key, recipe = first["status"]["candidate"]["key"], first["status"]["recipeKey"]
        assert condition(first, "Optimized")["reason"] == "ResultStored"
        assert stored(s3, "shared") == result_objects(key, recipe)

        # The same recipe in another namespace: a CacheHit serving the same bytes, and one that retains.
        apply(dev_cluster, other, model("digits", s3.endpoint, "shared", policy="Delete", replicas=1))
        apply(dev_cluster, other, model("keeper", s3.endpoint, "shared"))
        serving = ready(dev_cluster, other, "digits")
        keeper = ready(dev_cluster, other, "keeper")
        for body in (serving, keeper):
            assert condition(body, "Optimized")["reason"] == "CacheHit" and body["status"]["candidate"]["key"] == key
        assert jobs(dev_cluster, other) == []

        # Deleting the resource that computed the result keeps it: two others use it, and say so.
        delete(dev_cluster, namespace, "digits")
        gone(dev_cluster, namespace, "om/digits")
        assert stored(s3, "shared") == result_objects(key, recipe)
        shared = posted(dev_cluster, namespace, "ArtifactsShared", "digits", f"result {key[:12]}")
        assert f"result {key[:12]} (used by {other}/digits, {other}/keeper)" in shared, shared
        assert f"recipe pointer {recipe[:12]} (used by {other}/digits, {other}/keeper)" in shared, shared
        assert not events(dev_cluster, namespace, "ArtifactsDeleted", "digits")  # nothing was

        # The serving model is not broken: a new serving pod downloads and verifies the bytes again.
        old_pod = wait_for("a ready serving pod", lambda: serving_pod(dev_cluster, other), timeout=60)
        dev_cluster.kubectl("delete", "pod", old_pod["metadata"]["name"], "-n", other, "--wait=false")
        new_pod = wait_for(
            "a new ready serving pod",
            lambda: (p := serving_pod(dev_cluster, other)) and p["metadata"]["uid"] != old_pod["metadata"]["uid"] and p,
            timeout=120,
        )
        assert new_pod["status"]["phase"] == "Running"
        assert ready(dev_cluster, other, "digits", timeout=60)["status"]["serving"]["sha256"] == (
            first["status"]["candidate"]["sha256"]
        )

        # A resource with Delete is deleted while one with Retain still uses the result: kept.
        delete(dev_cluster, other, "digits")
        gone(dev_cluster, other, "om/digits")
        assert stored(s3, "shared") == result_objects(key, recipe)
        posted(dev_cluster, other, "ArtifactsShared", "digits", f"result {key[:12]} (used by {other}/keeper)")

        # Retain (the default), even as the last user: nothing is removed.
        delete(dev_cluster, other, "keeper")
        gone(dev_cluster, other, "om/keeper")
        assert stored(s3, "shared") == result_objects(key, recipe)
        assert not events(dev_cluster, other, "ArtifactsDeleted", "keeper")
    finally:
        dev_cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
    assert operator.alive()


def test_delete_removes_every_result_the_resource_stored_and_nothing_else(
    dev_cluster: DevCluster, namespace: str, s3: S3Server, operator: Operator
) -> None:
    credentials(dev_cluster, namespace, s3)
    client = s3.client()
    client.put_object(Bucket="artifacts", Key="history/README.txt", Body=b"not optimodel's")
    client.put_object(Bucket="artifacts", Key="history-old/keep.txt", Body=b"a neighbour prefix")

    apply(dev_cluster, namespace, model("digits", s3.endpoint, "history", policy="Delete"))
    v1 = ready(dev_cluster, namespace, "digits")["status"]
    # A new source version: a second Job, a second result; the first one is still this resource's.
    apply(
        dev_cluster,
        namespace,
        model("digits", s3.endpoint, "history", policy="Delete", source="s3://models/digits/2/model.h5"),
    )
    v2 = wait_for(
        "the second result Ready",
        lambda: (
            (b := get(dev_cluster, namespace, "om", "digits"))
            and condition(b, "Ready").get("status") == "True"
            and (b["status"].get("candidate") or {}).get("key") not in (None, v1["candidate"]["key"])
            and b["status"]
        ),
        timeout=240,
    )
    used = [(u["recipeKey"], u["key"]) for u in v2["results"]]
    assert used == [(v1["recipeKey"], v1["candidate"]["key"]), (v2["recipeKey"], v2["candidate"]["key"])]
    written = result_objects(v1["candidate"]["key"], v1["recipeKey"]) | result_objects(
        v2["candidate"]["key"], v2["recipeKey"]
    )
    assert stored(s3, "history") == written | {"README.txt"}

    delete(dev_cluster, namespace, "digits")
    gone(dev_cluster, namespace, "om/digits")
    assert stored(s3, "history") == {"README.txt"}
    assert stored(s3, "history-old") == {"keep.txt"}
    posted(dev_cluster, namespace, "ArtifactsDeleted", "digits", "deleted 2 stored result(s)")
    assert operator.alive()


def test_storage_failure_blocks_deletion_with_a_message_until_it_recovers(
    dev_cluster: DevCluster, namespace: str, s3: S3Server, operator: Operator
) -> None:
    host, port = s3.endpoint.removeprefix("http://").rsplit(":", 1)
    gate = TcpGate(dev_cluster.host_ip, (host, int(port)))
    gate.open()
    try:
        credentials(dev_cluster, namespace, s3)
        apply(dev_cluster, namespace, model("digits", gate.endpoint, "blocked", policy="Delete"))
        apply(dev_cluster, namespace, model("letgo", gate.endpoint, "blocked", policy="Delete"))
        status = ready(dev_cluster, namespace, "digits")["status"]
        assert ready(dev_cluster, namespace, "letgo")["status"]["candidate"]["key"] == status["candidate"]["key"]
        before = stored(s3, "blocked")
        assert before == result_objects(status["candidate"]["key"], status["recipeKey"])

        # Credentials refused at delete time: Terminating, a Warning that says why and how to give up.
        credentials(dev_cluster, namespace, s3, right=False)
        for name in ("digits", "letgo"):
            dev_cluster.kubectl("delete", "om", name, "-n", namespace, "--wait=false")
        posted(dev_cluster, namespace, "ArtifactsNotDeleted", "digits", "refused the credentials")
        warning = events(dev_cluster, namespace, "ArtifactsNotDeleted", "digits")[0]
        assert warning["type"] == "Warning" and "set spec.artifacts.deletionPolicy to Retain" in warning["message"]
        body = get(dev_cluster, namespace, "om", "digits")
        assert body["metadata"].get("deletionTimestamp") and body["metadata"].get("finalizers")
        described = dev_cluster.kubectl("describe", "om", "digits", "-n", namespace).stdout
        assert "ArtifactsNotDeleted" in described and "refused the credentials" in described
        assert stored(s3, "blocked") == before

        # Storage unreachable (right keys now): still blocked, with that reason.
        gate.close()
        credentials(dev_cluster, namespace, s3)
        posted(dev_cluster, namespace, "ArtifactsNotDeleted", "digits", "cannot reach the S3 endpoint", timeout=90)
        assert get(dev_cluster, namespace, "om", "digits") is not None and stored(s3, "blocked") == before

        # Giving up on one: Retain lets it go at once and removes nothing.
        patch = {"spec": {"artifacts": {"deletionPolicy": "Retain"}}}
        dev_cluster.kubectl("patch", "om", "letgo", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        gone(dev_cluster, namespace, "om/letgo", timeout=30)
        assert get(dev_cluster, namespace, "om", "digits") is not None and stored(s3, "blocked") == before

        # Storage back: the next retry removes everything (the one that let go no longer exists).
        gate.open()
        gone(dev_cluster, namespace, "om/digits", timeout=240)
        assert stored(s3, "blocked") == set()
        posted(dev_cluster, namespace, "ArtifactsDeleted", "digits", "deleted 1 stored result(s)")
    finally:
        gate.close()
    assert operator.alive()


def test_deleting_the_namespace_is_never_blocked_by_its_secret(
    dev_cluster: DevCluster, namespace: str, s3: S3Server, operator: Operator
) -> None:
    unattended = f"{namespace}-b"
    dev_cluster.kubectl("create", "namespace", unattended)
    try:
        for where, prefix in ((namespace, "ns-watched"), (unattended, "ns-unattended")):
            credentials(dev_cluster, where, s3)
            apply(dev_cluster, where, model("digits", s3.endpoint, prefix, policy="Delete"))
        for where, prefix in ((namespace, "ns-watched"), (unattended, "ns-unattended")):
            status = ready(dev_cluster, where, "digits")["status"]
            assert stored(s3, prefix) == result_objects(status["candidate"]["key"], status["recipeKey"])
        kept = stored(s3, "ns-unattended")

        # The operator is down while a namespace goes: its Secret is deleted at once, the resource
        # waits for the finalizer. Back up, the operator has no credentials: it keeps the results
        # (the Secret cannot come back in a terminating namespace) and lets the namespace go.
        operator.stop()
        dev_cluster.kubectl("delete", "namespace", unattended, "--wait=false")
        gone(dev_cluster, unattended, "secret/s3-credentials")
        assert get(dev_cluster, unattended, "om", "digits") is not None  # held by the finalizer
        operator.start()
        wait_for(
            "the namespace to go",
            lambda: dev_cluster.kubectl("get", "namespace", unattended, check=False).returncode != 0,
            timeout=120,
        )
        assert stored(s3, "ns-unattended") == kept
        assert f"{unattended}/digits" in operator.log.read_text() and "are retained" in operator.log.read_text()

        # With the operator up, a namespace deletion removes the results with the credentials it used
        # (a new generation observed: the restarted operator has reconciled the resource since).
        patch = {"spec": {"serving": {"threads": 2}}}
        dev_cluster.kubectl("patch", "om", "digits", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        wait_for(
            "the new generation observed",
            lambda: (b := get(dev_cluster, namespace, "om", "digits"))
            and b["status"].get("observedGeneration") == b["metadata"]["generation"],
            timeout=60,
        )
        dev_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        wait_for(
            "the namespace to go",
            lambda: dev_cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0,
            timeout=120,
        )
        assert stored(s3, "ns-watched") == set()
    finally:
        dev_cluster.kubectl("delete", "namespace", unattended, "--wait=false", check=False)
    assert operator.alive()
