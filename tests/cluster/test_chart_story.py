"""The digits story as a user runs it: `helm install` from the images `make images` built, on the
real node, with the chart's pod security enforced.

The operator runs in its container and reconciles; the Job runs `optimodel job` in the optimizer
image; the serving pods run the serve image; a client pod in another namespace calls
`status.serving.url` through the Service and cluster DNS. Its answers are compared with an oracle
that shares no code with the server: the stored artifact, downloaded with boto3 and run by LiteRT
here. Each pod's own view of itself (user, capabilities, seccomp, a read-only root, its memory
limit) is read from inside the running container.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.helm_kit import CHART, HELM, Helm, image_values
from tests.cluster.operator_kit import apply, condition, get, manifest, moto_with_tiny_models, setup_namespace
from tests.support.polling import wait_for

pytestmark = pytest.mark.skipif(not HELM.is_file(), reason=f"no helm binary at {HELM}: run `make k8s-bins`")

SELF_REPORT = textwrap.dedent("""
    import json, os
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    try:
        open("/written", "w").write("x")
        root = "writable"
    except OSError as err:
        root = err.strerror
    limit = open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip()
    print(json.dumps({"uid": os.getuid(), "capEff": status["CapEff"].strip(), "seccomp": status["Seccomp"].strip(),
                      "root": root, "memoryLimit": int(limit)}))
""")


@pytest.fixture(scope="module")
def story(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto with the tiny models, the chart installed in a namespace of its own watching another."""
    folder = tmp_path_factory.mktemp("chart-story")
    suffix = uuid.uuid4().hex[:6]
    system, watched, release = f"om-system-{suffix}", f"ml-{suffix}", f"om-{suffix}"
    with moto_with_tiny_models(dev_cluster, folder) as endpoint:
        for name in (system, watched):
            dev_cluster.kubectl("create", "namespace", name)
        helm = Helm(dev_cluster, folder / "helm")
        helm(
            "install", release, str(CHART), "--namespace", system,
            "--set", f"watchNamespaces={{{watched}}}",
            "--set", "reconcile.resyncSeconds=10",
            "--set", f"s3.allowedEndpoints={{http://{dev_cluster.host_ip}:*}}",
            *image_values(dev_cluster),
        )  # fmt: skip
        try:
            yield dict(endpoint=endpoint, system=system, watched=watched, release=release, folder=str(folder))
        finally:
            dev_cluster.kubectl("delete", "optimizedmodel", "--all", "-n", watched, "--timeout=60s", check=False)
            helm("uninstall", release, "--namespace", system, "--wait", "--timeout=60s")
            for name in (system, watched):
                dev_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def exec_report(cluster: DevCluster, namespace: str, pod: str) -> dict[str, Any]:
    out = cluster.kubectl("exec", "-n", namespace, pod, "--", "python", "-c", SELF_REPORT).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def running_pod(cluster: DevCluster, namespace: str, selector: str) -> dict[str, Any]:
    pods = get(cluster, namespace, "pods", "-l", selector)["items"]
    return next(p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"))


def memory_limit(pod: dict[str, Any]) -> int:
    value = pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert value.endswith("Mi"), value
    return int(value[:-2]) * 2**20


def test_helm_installed_operator_optimizes_and_serves_through_the_service(
    dev_cluster: DevCluster, story: dict[str, str]
) -> None:
    system, watched = story["system"], story["watched"]
    operator_selector = f"app.kubernetes.io/instance={story['release']}"
    dev_cluster.kubectl(
        "wait", "--for=condition=Available", "deployment", "-l", operator_selector, "-n", system, "--timeout=120s"
    )
    setup_namespace(dev_cluster, watched)
    body = manifest("digits", story["endpoint"])
    body["spec"]["serving"]["resources"] = {"requests": {"cpu": "50m"}, "limits": {"memory": "256Mi"}}
    apply(dev_cluster, watched, body)

    def ready() -> dict[str, Any] | None:
        body = get(dev_cluster, watched, "om", "digits")
        return body if condition(body, "Ready").get("status") == "True" else None

    om = wait_for("the model Ready", ready, timeout=400)
    status = om["status"]
    assert status["serving"]["ready"] == "1/1" and condition(om, "Optimized")["reason"] == "ResultStored"

    # The Job ran in the optimizer image, the serving pod runs the serve image, the operator its own.
    # The report is stored before the pod exits: the Job controller may count the success a moment
    # after the operator has already served the model.
    job = wait_for(
        "the Job's success counted",
        lambda: (j := get(dev_cluster, watched, "job", status["jobName"]))["status"].get("succeeded") == 1 and j,
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == dev_cluster.images["job"]
    serving = running_pod(dev_cluster, watched, "app.kubernetes.io/component=serving")
    operator = running_pod(dev_cluster, system, operator_selector)
    assert serving["spec"]["containers"][0]["image"] == dev_cluster.images["serve"]
    assert operator["spec"]["containers"][0]["image"] == dev_cluster.images["operator"]

    # Pod security as each running container sees itself.
    for namespace, pod in ((watched, serving), (system, operator)):
        report = exec_report(dev_cluster, namespace, pod["metadata"]["name"])
        assert report == {
            "uid": 65532,
            "capEff": "0000000000000000",
            "seccomp": "2",
            "root": "Read-only file system",
            "memoryLimit": memory_limit(pod),
        }, pod["metadata"]["name"]

    # A client in another namespace asks the Service by the URL status gives.
    x = np.load(Path(story["folder"]) / "test.npz")["x"][:12]
    client_ns = f"{watched}-client"
    dev_cluster.kubectl("create", "namespace", client_ns)
    try:
        answers = ask_through_service(dev_cluster, client_ns, status["serving"]["url"], x)
    finally:
        dev_cluster.kubectl("delete", "namespace", client_ns, "--wait=false", check=False)
    expected = oracle(story["endpoint"], status["candidate"]["artifactUri"], x)
    assert np.asarray(answers).argmax(axis=1).tolist() == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(np.asarray(answers), expected, atol=1e-5)


def ask_through_service(cluster: DevCluster, namespace: str, url: str, x: np.ndarray) -> list[list[float]]:
    code = textwrap.dedent(f"""
        import json, sys, time, urllib.request
        body = json.dumps({{"instances": {x.tolist()!r}}}).encode()
        url = {url + "/v1/models/digits:predict"!r}
        for _ in range(50):
            try:
                print(json.dumps(json.load(urllib.request.urlopen(url, body, timeout=5))))
                sys.exit(0)
            except OSError as err:
                print(err, file=sys.stderr); time.sleep(0.2)
        sys.exit(1)
    """)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": cluster.images["serve"],
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", code],
                }
            ],
        },
    }
    apply(cluster, namespace, pod)
    done = wait_for(
        "the client to finish",
        lambda: (p := get(cluster, namespace, "pod", "client"))["status"].get("phase") in ("Succeeded", "Failed") and p,
    )
    logs = cluster.kubectl("logs", "-n", namespace, "client").stdout
    assert done["status"]["phase"] == "Succeeded", logs
    return json.loads(logs)["predictions"]  # type: ignore[no-any-return]


def oracle(endpoint: str, artifact_uri: str, x: np.ndarray) -> np.ndarray:
    """The stored artifact run by LiteRT here, with int8 input and output scaling done by hand."""
    from ai_edge_litert.interpreter import Interpreter

    bucket, key = artifact_uri.removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")  # fmt: skip
    model = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    interpreter = Interpreter(model_content=model)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for sample in x:
        value = sample[None, ...]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            value = np.clip(np.round(value / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.resize_tensor_input(inp["index"], value.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            result = (result - zero) * scale
        rows.append(result[0])
    return np.asarray(rows)
