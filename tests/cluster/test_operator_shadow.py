"""Shadow rollouts on the real node with real traffic: the serving pods mirror live requests to the
candidate's pods, the operator reads their /metrics and promotes or stops the candidate.

Clients call the serving pods through a NodePort Service (kube-proxy on the node, as any client
outside the cluster would) for the whole story and must never see an error. Two candidates follow
the first model (which rolls out directly: nothing serves yet to compare with): version 2 of the
tiny digits model, which answers real digits as version 1 does, and version 3, trained with every
3 labelled 8, which passes its offline gates (accuracy is still above minMetric) but disagrees on
the slice of inputs that are 3s, and is stopped by the analysis while version 2 keeps serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import apply, condition, get, manifest, setup_namespace
from tests.cluster.traffic_kit import (
    Clients,
    digit_rows,
    node_port_service,
    om_where,
    reasons,
    served_sha,
    upload_skewed_model,
)
from tests.support.polling import wait_for

ANALYSIS = {
    "minRequests": 300,
    "maxSeconds": 600,
    # Measured in float: versions 1 and 2 agree on 97.5% of the test digits, 2 and 3 on 87.7%.
    "minAgreement": 0.93,
    "maxErrorRate": 0.01,
    # Both models are a 64-unit net on one shared 2-core node: generous, but read and judged.
    "maxP95LatencyRatio": 10,
}


@pytest.fixture(scope="module")
def skewed_model(s3: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return upload_skewed_model(s3, tmp_path_factory.mktemp("skewed"))


def shadow_manifest(s3: str, source: str) -> dict[str, Any]:
    body = manifest("digits", s3, source=source, maxSizeRatio=0.5, minMetric=0.8)
    body["spec"]["rollout"] = {"strategy": "shadow", "analysis": ANALYSIS}
    return body


def test_shadow_promotes_an_agreeing_candidate_and_stops_a_disagreeing_one(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Any, skewed_model: str, clients: list[Clients]
) -> None:
    setup_namespace(dev_cluster, namespace)
    apply(dev_cluster, namespace, shadow_manifest(s3, "s3://models/digits/1/model.h5"))
    first = om_where(dev_cluster, namespace, "v1 Ready", lambda b: condition(b, "Ready").get("status") == "True", 600)
    assert first["status"].get("analysis") is None  # the first model had nothing to be compared with
    v1 = served_sha(dev_cluster, namespace)

    serving_pods = {"app.kubernetes.io/instance": "digits", "app.kubernetes.io/component": "serving"}
    url = node_port_service(dev_cluster, namespace, serving_pods)
    client = Clients(url + ":predict", digit_rows())
    clients.append(client)
    client.start()

    # Version 2 agrees: analysed on mirrored traffic, then promoted.
    apply(dev_cluster, namespace, shadow_manifest(s3, "s3://models/digits/2/model.h5"))
    analysing = om_where(
        dev_cluster, namespace, "v2 under analysis", lambda b: b["status"].get("phase") == "Analyzing", 300
    )
    assert condition(analysing, "Reconciling")["status"] == "True"
    assert condition(analysing, "Ready")["reason"] == "ShadowAnalyzing"
    candidate = analysing["status"]["candidate"]["sha256"]
    assert analysing["status"]["serving"]["sha256"] == v1  # still the served model while it is judged
    promoted = om_where(
        dev_cluster, namespace, "v2 promoted and Ready",
        lambda b: condition(b, "Ready").get("status") == "True"
        and (b["status"].get("serving") or {}).get("sha256") == candidate,
        400,
    )
    analysis = promoted["status"]["analysis"]
    print("promoted:", json.dumps(analysis))
    assert analysis["phase"] == "Passed" and analysis["candidateSha256"] == candidate
    assert analysis["requests"] >= ANALYSIS["minRequests"] and analysis["agreement"] >= ANALYSIS["minAgreement"]
    assert analysis["candidateP95Ms"] is not None and analysis["servingP95Ms"] is not None
    assert "every threshold held" in reasons(dev_cluster, namespace)["ShadowAnalysisPassed"]
    shadow = get(dev_cluster, namespace, "deployment", "digits-shadow")  # where the candidate ran
    assert shadow["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"] == candidate
    wait_for("the candidate's pods gone", lambda: not get(
        dev_cluster, namespace, "pods", "-l", "app.kubernetes.io/component=shadow")["items"], timeout=120)

    # Version 3 disagrees on the 3s: stopped, version 2 keeps serving.
    apply(dev_cluster, namespace, shadow_manifest(s3, skewed_model))
    stopped = om_where(
        dev_cluster, namespace, "v3 stopped", lambda b: condition(b, "Stalled").get("status") == "True", 600
    )
    analysis = stopped["status"]["analysis"]
    print("stopped:", json.dumps(analysis))
    assert condition(stopped, "Stalled")["reason"] == "ShadowAnalysisFailed", stopped["status"]
    assert stopped["status"]["phase"] == "AnalysisFailed" and condition(stopped, "Reconciling")["status"] == "False"
    assert analysis["phase"] == "Failed" and analysis["candidateSha256"] == stopped["status"]["candidate"]["sha256"]
    assert stopped["status"]["candidate"]["passed"] is True  # its offline gates passed
    assert analysis["agreement"] < ANALYSIS["minAgreement"] and analysis["requests"] >= ANALYSIS["minRequests"]
    assert "minAgreement: actual" in condition(stopped, "Stalled")["message"]
    assert "minAgreement: actual" in reasons(dev_cluster, namespace)["ShadowAnalysisFailed"]
    assert served_sha(dev_cluster, namespace) == candidate
    wait_for("the stopped candidate's pods gone", lambda: not get(
        dev_cluster, namespace, "pods", "-l", "app.kubernetes.io/component=shadow")["items"], timeout=120)
    assert get(dev_cluster, namespace, "deployment", "digits-shadow")["spec"]["replicas"] == 0
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl-optimodel"), "get", "digits", "-n", namespace],
        env={**os.environ, "KUBECONFIG": str(dev_cluster.kubeconfig)}, capture_output=True, text=True, timeout=60,
    ).stdout
    assert f"Analysis:      Failed sha256:{analysis['candidateSha256'][:12]} | {analysis['requests']} mirrored" in shown

    # The clients were answered all along, through one promotion and one stopped candidate.
    answered = client.answered
    client.stop()
    assert client.failures == [] and answered > 2 * ANALYSIS["minRequests"]
