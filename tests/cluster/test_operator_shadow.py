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
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import apply, condition, get, manifest, setup_namespace
from tests.support.polling import wait_for

# Version 3: version 2's recipe, but every 3 of the training set labelled 8.
SKEWED_MODEL = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, tf_keras as keras
    from sklearn.datasets import load_digits
    d = load_digits(); x = (d.images / 16.0).astype("float32")[..., None]; y = d.target.astype("int64")
    labels = y[:1400].copy(); labels[labels == 3] = 8
    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.layers.Flatten(input_shape=(8, 8, 1)),
                          keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x[:1400], labels, epochs=20, verbose=0)
    m.save(sys.argv[1])
""")
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
    """Version 3 in the module's S3 server; its URI."""
    import boto3

    path = tmp_path_factory.mktemp("skewed") / "model.h5"
    subprocess.run([sys.executable, "-c", SKEWED_MODEL, str(path)], check=True, timeout=300)
    client = boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    client.upload_file(str(path), "models", "digits/3/model.h5")
    return "s3://models/digits/3/model.h5"


def shadow_manifest(s3: str, source: str) -> dict[str, Any]:
    body = manifest("digits", s3, source=source, maxSizeRatio=0.5, minMetric=0.8)
    body["spec"]["rollout"] = {"strategy": "shadow", "analysis": ANALYSIS}
    return body


class Clients:
    """A client calling the model in a loop through a NodePort, one real digit per request.

    TF Serving's row format names no input: versions of a model may name theirs differently
    (`flatten_input`, `flatten_1_input`), and the client must not care which one answers.
    """

    def __init__(self, url: str, images: list[Any]) -> None:
        self.url, self.images = url, images
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            index = 0
            while not self._stop.is_set():
                image = self.images[index % len(self.images)]
                index += 1
                try:
                    response = client.post(self.url, json={"instances": [image]})
                except httpx.HTTPError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                    continue
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def node_port_service(cluster: DevCluster, namespace: str) -> str:
    """A NodePort Service of the test's own in front of the serving pods; the model's v1 URL."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "clients", "namespace": namespace},
        "spec": {
            "type": "NodePort",
            "selector": {"app.kubernetes.io/instance": "digits", "app.kubernetes.io/component": "serving"},
            "ports": [{"port": 8501, "targetPort": 8501}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(service))
    port = get(cluster, namespace, "service", "clients")["spec"]["ports"][0]["nodePort"]
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    return f"http://{ip}:{port}/v1/models/digits"


@pytest.fixture
def clients(dev_cluster: DevCluster) -> Iterator[list[Clients]]:
    started: list[Clients] = []
    yield started
    for client in started:
        client.stop()


def om_where(cluster: DevCluster, namespace: str, what: str, check: Any, timeout: float) -> dict[str, Any]:
    found = wait_for(what, lambda: (b := get(cluster, namespace, "om", "digits")) and check(b) and b, timeout=timeout)
    return dict(found)


def served_sha(cluster: DevCluster, namespace: str) -> str:
    deployment = get(cluster, namespace, "deployment", "digits-serving")
    return str(deployment["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"])


def reasons(cluster: DevCluster, namespace: str) -> dict[str, str]:
    return {e["reason"]: e["message"] for e in get(cluster, namespace, "events")["items"]}


def test_shadow_promotes_an_agreeing_candidate_and_stops_a_disagreeing_one(
    dev_cluster: DevCluster, namespace: str, s3: str, operator: Any, skewed_model: str, clients: list[Clients]
) -> None:
    from sklearn.datasets import load_digits

    setup_namespace(dev_cluster, namespace)
    apply(dev_cluster, namespace, shadow_manifest(s3, "s3://models/digits/1/model.h5"))
    first = om_where(dev_cluster, namespace, "v1 Ready", lambda b: condition(b, "Ready").get("status") == "True", 600)
    assert first["status"].get("analysis") is None  # the first model had nothing to be compared with
    v1 = served_sha(dev_cluster, namespace)

    url = node_port_service(dev_cluster, namespace)
    wait_for("the model through the NodePort", lambda: _json(url), timeout=60)
    images = [image[..., None].tolist() for image in (load_digits().images[1400:] / 16.0)]
    client = Clients(url + ":predict", images)
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


def _json(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None
