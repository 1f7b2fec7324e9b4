"""The node is a real one: the kubelet enforces pod security and limits, runs only images it has,
serves logs, exec and port-forward, and kube-proxy with CoreDNS make Services reachable by name.

The pods run the project's own images (`make images`), with `imagePullPolicy: Never`: the node
has no registry to pull from.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from typing import Any

import yaml

from optimodel.devcluster.fixture import DevCluster
from tests.support.polling import wait_for


def apply(cluster: DevCluster, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def pod(name: str, image: str, command: list[str], **container: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": []}
    spec.update(container.pop("pod_spec", {}))
    spec["containers"] = [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": command, **container}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


def pod_json(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]


def finished(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    """The pod once its container terminated."""
    return wait_for(
        f"pod {name} to finish",
        lambda: (p := pod_json(cluster, namespace, name))["status"].get("phase") in ("Succeeded", "Failed") and p,
    )


def waiting_reason(cluster: DevCluster, namespace: str, name: str) -> str | None:
    statuses = pod_json(cluster, namespace, name)["status"].get("containerStatuses") or []
    waiting = statuses[0]["state"].get("waiting") if statuses else None
    return waiting.get("reason") if waiting else None


# What a container reports of itself: user, capabilities, seccomp mode, whether / is writable, the
# memory limit of its cgroup (v1).
SELF_REPORT = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
try:
    open("/written", "w").write("x")
    root_writable = True
except OSError as err:
    root_writable = err.strerror
open("/scratch/ok", "w").write("x")
limit = open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip()
report = {"uid": os.getuid(), "gid": os.getgid(), "capEff": status["CapEff"].strip(),
          "capPrm": status["CapPrm"].strip(), "seccomp": status["Seccomp"].strip(),
          "noNewPrivs": status["NoNewPrivs"].strip(), "rootWritable": root_writable, "memoryLimit": limit}
open("/dev/termination-log", "w").write(json.dumps(report))
"""

RESTRICTED = {
    "runAsUser": 4321,
    "runAsGroup": 4321,
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_the_kubelet_enforces_the_security_context_and_the_memory_limit(
    dev_cluster: DevCluster, namespace: str
) -> None:
    restricted = pod(
        "restricted",
        dev_cluster.images["serve"],
        ["python", "-c", SELF_REPORT],
        securityContext=RESTRICTED,
        resources={"limits": {"memory": "48Mi", "cpu": "500m"}},
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        pod_spec={"volumes": [{"name": "scratch", "emptyDir": {}}]},
    )
    apply(dev_cluster, namespace, restricted)
    done = finished(dev_cluster, namespace, "restricted")
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert done["status"]["phase"] == "Succeeded", terminated
    report = json.loads(terminated["message"])
    assert report == {
        "uid": 4321,
        "gid": 4321,
        "capEff": "0000000000000000",
        "capPrm": "0000000000000000",
        "seccomp": "2",  # filtering
        "noNewPrivs": "1",
        "rootWritable": "Read-only file system",
        "memoryLimit": str(48 * 2**20),
    }


def test_a_container_over_its_memory_limit_is_oom_killed(dev_cluster: DevCluster, namespace: str) -> None:
    grow = "blocks = []\nwhile True: blocks.append(bytearray(8 << 20))"
    apply(
        dev_cluster,
        namespace,
        pod("hungry", dev_cluster.images["serve"], ["python", "-c", grow], resources={"limits": {"memory": "64Mi"}}),
    )
    done = finished(dev_cluster, namespace, "hungry")
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (done["status"]["phase"], terminated["reason"], terminated["exitCode"]) == ("Failed", "OOMKilled", 137)


def test_an_image_the_node_lacks_is_never_run(dev_cluster: DevCluster, namespace: str) -> None:
    never = pod("never", "localhost/optimodel-absent:1", ["true"])
    if_not_present = pod("pull", "localhost/optimodel-absent:1", ["true"], imagePullPolicy="IfNotPresent")
    apply(dev_cluster, namespace, never, if_not_present)
    wait_for("ErrImageNeverPull", lambda: waiting_reason(dev_cluster, namespace, "never") == "ErrImageNeverPull")
    wait_for(
        "a failed pull",
        lambda: waiting_reason(dev_cluster, namespace, "pull") in ("ErrImagePull", "ImagePullBackOff"),
    )
    assert pod_json(dev_cluster, namespace, "never")["status"]["phase"] == "Pending"


SERVER = "cd /scratch && echo -n hello-from-$POD_NAME > index && exec python -m http.server 8080"


def web(name: str, image: str) -> dict[str, Any]:
    return pod(
        name,
        image,
        ["sh", "-c", SERVER],
        env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        ports=[{"containerPort": 8080}],
        readinessProbe={"httpGet": {"path": "/index", "port": 8080}, "periodSeconds": 1},
        securityContext=RESTRICTED,
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        pod_spec={"restartPolicy": "Always", "volumes": [{"name": "scratch", "emptyDir": {}}]},
    )


def test_logs_exec_and_port_forward_go_through_the_kubelet(dev_cluster: DevCluster, namespace: str) -> None:
    apply(dev_cluster, namespace, web("web", dev_cluster.images["serve"]))
    dev_cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/web", "--timeout=60s")

    assert dev_cluster.kubectl("exec", "-n", namespace, "web", "--", "id", "-u").stdout == "4321\n"

    local_port = _free_port()
    forward = subprocess.Popen(
        [
            str(dev_cluster.kubectl_bin),
            f"--kubeconfig={dev_cluster.kubeconfig}",
            "port-forward",
            "-n",
            namespace,
            "pod/web",
            f"{local_port}:8080",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = wait_for("the forwarded port", lambda: _get(f"http://127.0.0.1:{local_port}/index"), timeout=30)
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    assert body == "hello-from-web"
    logs = wait_for(
        "the access log line",
        lambda: (out := dev_cluster.kubectl("logs", "-n", namespace, "web").stdout) and "GET /index" in out and out,
    )
    assert '"GET /index HTTP/1.1" 200' in logs


def test_services_answer_by_name_across_namespaces_and_on_a_node_port(dev_cluster: DevCluster, namespace: str) -> None:
    apply(dev_cluster, namespace, web("backend", dev_cluster.images["serve"]))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "backend"},
        "spec": {"type": "NodePort", "selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(dev_cluster, namespace, service)
    dev_cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/backend", "--timeout=60s")

    other = f"{namespace}-client"
    dev_cluster.kubectl("create", "namespace", other)
    try:
        url = f"http://backend.{namespace}.svc.cluster.local/index"
        fetch = (
            "import sys, time, urllib.request\n"
            "for _ in range(100):\n"
            "    try:\n"
            f"        print(urllib.request.urlopen({url!r}, timeout=2).read().decode()); sys.exit(0)\n"
            "    except OSError as err:\n"
            "        print(err, file=sys.stderr); time.sleep(0.2)\n"
            "sys.exit(1)\n"
        )
        apply(dev_cluster, other, pod("client", dev_cluster.images["serve"], ["python", "-c", fetch]))
        done = finished(dev_cluster, other, "client")
        assert done["status"]["phase"] == "Succeeded", dev_cluster.kubectl("logs", "-n", other, "client").stdout
        # kube-proxy refuses connections to a Service until it has programmed the new endpoints, so
        # the client may log a few refusals on stderr (merged into the log) before the answer.
        assert dev_cluster.kubectl("logs", "-n", other, "client").stdout.splitlines()[-1] == "hello-from-backend"
    finally:
        dev_cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)

    node_port = json.loads(dev_cluster.kubectl("get", "service", "backend", "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]["ports"][0]["nodePort"]
    node_ip = _node_ip(dev_cluster)
    assert wait_for("the NodePort", lambda: _get(f"http://{node_ip}:{node_port}/index")) == "hello-from-backend"


def _node_ip(cluster: DevCluster) -> str:
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        time.sleep(0.1)
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
