"""What the shadow and canary stories on the real node share: a model that disagrees on a slice of
real inputs, clients calling the model through a NodePort for the whole story, and reads of the
resource, its Deployment and its Events."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.operator_kit import get
from tests.support.polling import wait_for

MODEL_HEADER = "Optimodel-Model-Sha256"  # every answer names the model that gave it
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


def upload_skewed_model(s3: str, directory: Path) -> str:
    """Version 3 in the module's S3 server; its URI."""
    import boto3

    path = directory / "model.h5"
    subprocess.run([sys.executable, "-c", SKEWED_MODEL, str(path)], check=True, timeout=300)
    client = boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    client.upload_file(str(path), "models", "digits/3/model.h5")
    return "s3://models/digits/3/model.h5"


def digit_rows() -> list[Any]:
    """The test digits (not trained on), one per request."""
    from sklearn.datasets import load_digits

    return [image[..., None].tolist() for image in (load_digits().images[1400:] / 16.0)]


class Clients:
    """A client calling the model in a loop through a NodePort, one real digit per request, counting
    the answers of each model (the header every answer carries).

    TF Serving's row format names no input: versions of a model may name theirs differently
    (`flatten_input`, `flatten_1_input`), and the client must not care which one answers. With
    `requests_per_connection` the client opens a new connection after that many requests, so
    kube-proxy picks a pod for each (a kept-alive connection stays with one pod): what a canary's
    share of pods is about. Not one per request: a few hundred new connections a second would hold
    thousands of ephemeral ports in TIME_WAIT, and ports the tests pick for their servers with them.
    """

    def __init__(self, url: str, images: list[Any], requests_per_connection: int | None = None) -> None:
        self.url, self.images, self.per_connection = url, images, requests_per_connection
        self.answered = 0
        self.by_model: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            with httpx.Client(timeout=30) as client:  # one connection, kept alive
                for _ in range(self.per_connection or sys.maxsize):
                    if self._stop.is_set():
                        break
                    self._call(client, self.images[index % len(self.images)])
                    index += 1

    def _call(self, client: httpx.Client, image: Any) -> None:
        try:
            response = client.post(self.url, json={"instances": [image]})
        except httpx.HTTPError as error:
            self.failures.append(f"{type(error).__name__}: {error}")
            return
        if response.status_code == 200:
            self.answered += 1
            self.by_model[response.headers.get(MODEL_HEADER, "")] += 1
        else:
            self.failures.append(f"{response.status_code}: {response.text[:200]}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def node_port_service(cluster: DevCluster, namespace: str, selector: dict[str, str]) -> str:
    """A NodePort Service of the test's own in front of the pods `selector` picks; the model's v1 URL."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "clients", "namespace": namespace},
        "spec": {"type": "NodePort", "selector": selector, "ports": [{"port": 8501, "targetPort": 8501}]},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(service))
    port = get(cluster, namespace, "service", "clients")["spec"]["ports"][0]["nodePort"]
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    url = f"http://{ip}:{port}/v1/models/digits"
    wait_for("the model through the NodePort", lambda: _json(url), timeout=60)
    return url


def om_where(cluster: DevCluster, namespace: str, what: str, check: Any, timeout: float) -> dict[str, Any]:
    found = wait_for(what, lambda: (b := get(cluster, namespace, "om", "digits")) and check(b) and b, timeout=timeout)
    return dict(found)


def served_sha(cluster: DevCluster, namespace: str) -> str:
    deployment = get(cluster, namespace, "deployment", "digits-serving")
    return str(deployment["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"])


def reasons(cluster: DevCluster, namespace: str) -> dict[str, str]:
    return {e["reason"]: e["message"] for e in get(cluster, namespace, "events")["items"]}


def _json(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None
