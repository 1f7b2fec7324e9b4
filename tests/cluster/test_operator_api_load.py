"""What the operator asks of the API server and of S3, read from the servers' own request logs.

The operator runs as the one user the dev cluster's API server audits (`AUDITED_USER`, in
`system:masters`), so `logs/audit.log` holds its requests and nobody else's; the S3 server is moto
in this process, whose request log (werkzeug's, one record per request) is captured. Two claims:

- the Jobs and Deployments it watches are filtered by the API server: its list and watch requests
  carry the label selector, so other Jobs and Deployments of the cluster never reach it;
- once a resource is Ready and nothing changes, a reconcile (the resync, every 2 s here) reads the
  resource and its Deployment and nothing else: at most two API requests, no write, no S3 request.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from optimodel.devcluster.controlplane import AUDITED_USER
from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import Operator, apply, condition, get, manifest, running_operator, setup_namespace
from tests.support.polling import wait_for

SELECTOR = "app.kubernetes.io/managed-by=optimodel"


class Requests(logging.Handler):
    """Every request line the in-process S3 server logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def s3_requests(s3: str) -> Iterator[Requests]:
    server_log = logging.getLogger("werkzeug")
    handler = Requests()
    server_log.addHandler(handler)
    level = server_log.level
    server_log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        server_log.removeHandler(handler)
        server_log.setLevel(level)


@pytest.fixture
def audited(dev_cluster: DevCluster, tmp_path: Path) -> Iterator[Operator]:
    """The operator as the audited user, resyncing every 2 s, checking S3 in full only once an hour."""
    if dev_cluster.plane is None:
        pytest.skip("a cluster given by OPTIMODEL_TEST_KUBECONFIG has no audit log of ours")
    kubeconfig = dev_cluster.user_kubeconfig(AUDITED_USER, ("system:masters",))
    env = {"OPTIMODEL_RESYNC_SECONDS": "2", "OPTIMODEL_FULL_RESYNC_SECONDS": "3600"}
    with running_operator(dev_cluster, tmp_path / "operator.log", env, kubeconfig=kubeconfig) as runner:
        yield runner


def audit(cluster: DevCluster) -> list[dict[str, Any]]:
    """The audited user's requests so far (one entry per request and stage); `objectRef` is empty
    for requests outside the resource API (discovery)."""
    path = cluster.state_dir / "logs" / "audit.log"
    entries = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [{"objectRef": {}, **e} for e in entries if e["user"]["username"] == AUDITED_USER]


def query(entry: dict[str, Any]) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(entry["requestURI"]).query)


def test_children_are_watched_by_label_and_a_settled_resource_costs_two_reads(
    dev_cluster: DevCluster, s3: str, s3_requests: Requests, audited: Operator, namespace: str
) -> None:
    setup_namespace(dev_cluster, namespace)
    apply(dev_cluster, namespace, manifest("digits", s3))
    wait_for(
        "the model Ready",
        lambda: condition(get(dev_cluster, namespace, "om", "digits"), "Ready").get("status") == "True",
        timeout=400,
    )

    # kopf's cluster-wide list and watch requests for Jobs and Deployments carry the selector (the
    # reconciler's own lists are namespaced and select one resource's Jobs or pods).
    entries = audit(dev_cluster)
    for resource in ("jobs", "deployments"):
        reads = [
            e for e in entries
            if e["objectRef"].get("resource") == resource and e["verb"] in ("list", "watch")
            and "namespace" not in e["objectRef"]
        ]  # fmt: skip
        assert {e["verb"] for e in reads} == {"list", "watch"}, resource
        assert all(query(e).get("labelSelector") == [SELECTOR] for e in reads), [e["requestURI"] for e in reads]

    # Settled: wait for two reconciles after Ready (the first may still write), then measure.
    audited.wait_for_reconciles(2)
    before, s3_before, reconciles = len(audit(dev_cluster)), len(s3_requests.lines), audited.reconciles()
    audited.wait_for_reconciles(5)
    # Only this namespace's requests: the operator watches every namespace, and a resource an earlier
    # test left in a namespace being deleted may still be reconciled (and post Events) meanwhile.
    window = [
        e for e in audit(dev_cluster)[before:]
        if e["stage"] == "ResponseComplete" and e["verb"] != "watch" and e["objectRef"].get("namespace") == namespace
    ]  # fmt: skip
    ran = audited.reconciles() - reconciles
    calls = [(e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("name")) for e in window]
    print(f"{ran:.0f} reconciles of a settled resource: {len(calls)} API requests, "
          f"{len(s3_requests.lines) - s3_before} S3 requests")  # fmt: skip
    assert s3_requests.lines[s3_before:] == []
    assert set(calls) <= {("get", "optimizedmodels", "digits"), ("get", "deployments", "digits-serving")}, calls
    assert len(calls) <= 2 * (ran + 1), calls  # +1: a reconcile may straddle the window's edge
    assert condition(get(dev_cluster, namespace, "om", "digits"), "Ready").get("status") == "True"
