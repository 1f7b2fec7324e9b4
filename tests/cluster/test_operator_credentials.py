"""Wrong S3 credentials end to end: the resource stalls with a clear reason, nothing leaks, and it
recovers by itself once the Secret is fixed.

The operator runs with `--verbose` (every logger at DEBUG, the Kubernetes client's included) and its
metrics on: after the whole story every place a user or a log collector can read (the operator's
log, status, Events, the pods' termination messages and logs, the reports in S3, the metrics) is
searched for every key, raw and base64-encoded as the API server sends Secrets.

The e2e story uses moto without authentication; this test uses `tests.support.s3server`, which turns
authentication on, so wrong keys are refused (403 InvalidAccessKeyId) as real S3 refuses them. The
operator runs with short retry and resync intervals so recovery is bounded in seconds.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import Operator, condition, get, running_operator, secret_yaml
from tests.support.polling import wait_for
from tests.support.s3server import S3Server, start_s3_server

pytestmark = pytest.mark.cluster

RETRY_SECONDS = 3
MODEL = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, tf_keras as keras
    from sklearn.datasets import load_digits
    out = sys.argv[1]
    d = load_digits(); x = (d.images / 16.0).astype("float32")[..., None]; y = d.target.astype("int64")
    np.savez(f"{out}/test.npz", x=x[1400:], y=y[1400:]); np.savez(f"{out}/calibration.npz", x=x[:100])
    keras.utils.set_random_seed(7)
    m = keras.Sequential([keras.layers.Flatten(input_shape=(8, 8, 1)),
                          keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x[:1400], y[:1400], epochs=5, verbose=0)
    m.save(f"{out}/model.h5")
""")


@pytest.fixture(scope="module")
def s3(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto with authentication on, on the host's address on the node's link, with one tiny model and its data."""
    work = tmp_path_factory.mktemp("credentials")
    trainer = subprocess.Popen([sys.executable, "-c", MODEL, str(work)])  # trains while moto starts
    server = start_s3_server(dev_cluster.host_ip, work / "moto.log")
    try:
        assert trainer.wait(timeout=300) == 0, "training the tiny model failed"
        server.upload(work / "model.h5", "s3://models/creds/model.h5")
        for name in ("test", "calibration"):
            server.upload(work / f"{name}.npz", f"s3://datasets/creds/{name}.npz")
        yield server
    finally:
        trainer.kill()
        server.stop()




@pytest.fixture
def operator(dev_cluster: DevCluster, tmp_path: Path) -> Iterator[Operator]:
    """`optimodel operator --verbose` retrying every few seconds and never resyncing within the test."""
    env = {"OPTIMODEL_RETRY_SECONDS": str(RETRY_SECONDS), "OPTIMODEL_RESYNC_SECONDS": "3600"}
    args = ("--verbose",)  # metrics are on: the kit gives every operator a port of its own
    with running_operator(dev_cluster, tmp_path / "operator.log", env, args) as runner:
        yield runner


def model(endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": "optimodel.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": "creds"},
        "spec": {
            "source": {"uri": "s3://models/creds/model.h5"},
            "optimization": {"method": "quantize", "quantization": {"type": "dynamic"}},
            "evaluation": {"data": "s3://datasets/creds/test.npz", "latency": {"runs": 10, "warmupRuns": 1}},
            "gates": {"minMetric": 0.5},
            "artifacts": {
                "uri": "s3://artifacts/creds/",
                "s3": {
                    "endpoint": endpoint,
                    "credentialsSecret": "s3-credentials",
                    "servingCredentialsSecret": "s3-credentials",  # one key pair in this S3 server
                },
            },
            "serving": {"replicas": 1},
            "job": {"activeDeadlineSeconds": 120, "backoffLimit": 0},
        },
    }


def creds(cluster: DevCluster, namespace: str) -> dict[str, Any] | None:
    body: dict[str, Any] | None = get(cluster, namespace, "om", "creds")
    return body


def forms(*values: str) -> set[str]:
    """Each value as it may appear: raw, and base64 as in a Secret's `data`."""
    return {form for value in values for form in (value, base64.b64encode(value.encode()).decode())}


def readable_texts(cluster: DevCluster, namespace: str, s3: S3Server, operator: Operator) -> dict[str, str]:
    """Everything a tenant, an operator or a log collector can read after the story."""
    kubectl = cluster.kubectl
    texts = {
        "operator log": operator.log.read_text(),
        "status": kubectl("get", "om", "-n", namespace, "-o", "yaml").stdout,
        "events": kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout,
        "pods and termination messages": kubectl("get", "pods", "-n", namespace, "-o", "yaml").stdout,
        "jobs": kubectl("get", "jobs", "-n", namespace, "-o", "yaml").stdout,
        "deployments": kubectl("get", "deployments", "-n", namespace, "-o", "yaml").stdout,
    }
    for pod in kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split():
        texts[f"log of {pod}"] = kubectl("logs", pod, "-n", namespace, "--all-containers", check=False).stdout
    client = s3.client()
    for item in client.list_objects_v2(Bucket="artifacts", Prefix="creds/").get("Contents", []):
        if item["Key"].endswith(".json"):
            texts[f"s3://artifacts/{item['Key']}"] = client.get_object(Bucket="artifacts", Key=item["Key"])[
                "Body"].read().decode()
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10) as answer:
        texts["metrics"] = answer.read().decode()
    return texts


def test_wrong_credentials_stall_without_leaking_then_recover(
    dev_cluster: DevCluster, namespace: str, s3: S3Server, operator: Operator
) -> None:
    log = operator.log
    wrong_id, wrong_secret = f"AKIAWRONG{uuid.uuid4().hex[:11].upper()}", f"wrong-{uuid.uuid4().hex}"
    dev_cluster.kubectl("apply", "-f", "-", input=secret_yaml(namespace, wrong_id, wrong_secret))
    dev_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(model(s3.endpoint)))

    # Wrong keys: Stalled, reason AccessDenied, an Event; no Job, the operator keeps running.
    stalled = wait_for(
        "Stalled=True",
        lambda: (b := creds(dev_cluster, namespace)) and condition(b, "Stalled").get("status") == "True" and b,
        timeout=30,
    )
    assert condition(stalled, "Stalled")["reason"] == "AccessDenied", stalled["status"]
    assert stalled["status"]["phase"] == "Failed"
    assert "refused the credentials" in condition(stalled, "Optimized")["message"]
    events = json.loads(dev_cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "AccessDenied" and e["type"] == "Warning" for e in events), events
    operator.wait_for_reconciles(2, result="retry", timeout=4 * RETRY_SECONDS)  # still denied, still one process
    assert operator.alive(), log.read_text()[-3000:]
    assert dev_cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip() == ""

    # No secret value anywhere a user or a log collector can read, debug logs included.
    assert "DEBUG" in log.read_text() or '"debug"' in log.read_text().lower(), "the operator is not verbose"
    for where, text in readable_texts(dev_cluster, namespace, s3, operator).items():
        for value in forms(wrong_secret, wrong_id, s3.secret_key):
            assert value not in text, f"a credential appears in the {where}"

    # Fix the Secret only: the same generation recovers through the operator's retry, no re-apply.
    generation = stalled["metadata"]["generation"]
    dev_cluster.kubectl("apply", "-f", "-", input=secret_yaml(namespace, s3.access_key, s3.secret_key))
    wait_for(  # the next retry (OPTIMODEL_RETRY_SECONDS), not the next resync, picks the new keys up
        "the Job after the fix",
        lambda: dev_cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip(),
        timeout=RETRY_SECONDS + 10,
    )
    optimized = wait_for(
        "Optimized=True (the Job ran with the fixed keys)",
        lambda: (b := creds(dev_cluster, namespace)) and condition(b, "Optimized").get("status") == "True" and b,
        timeout=90,
    )
    ready = wait_for(
        "Ready=True",
        lambda: (b := creds(dev_cluster, namespace)) and condition(b, "Ready").get("status") == "True" and b,
        timeout=60,
    )
    assert ready["metadata"]["generation"] == generation == optimized["metadata"]["generation"]
    assert condition(ready, "Stalled")["status"] == "False" and ready["status"]["phase"] == "Ready"
    assert operator.alive()
    texts = readable_texts(dev_cluster, namespace, s3, operator)
    assert any(where.startswith("s3://") for where in texts) and any(where.startswith("log of") for where in texts)
    for where, text in texts.items():
        for value in forms(wrong_secret, wrong_id, s3.secret_key, s3.access_key):
            assert value not in text, f"a credential appears in the {where}"
