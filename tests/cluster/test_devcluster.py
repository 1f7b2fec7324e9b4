"""The local cluster behaves like Kubernetes: API machinery, controllers and a real node.

Each test talks to real processes (etcd, kube-apiserver, controllers, scheduler, kubelet,
containerd, runc, kube-proxy, CoreDNS) and pods that run as containers from the project's images.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from optimodel.devcluster.fixture import DevCluster
from tests.support.polling import wait_for


def get_json(cluster: DevCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def apply(cluster: DevCluster, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def pod_spec(image: str, command: list[str], **extra: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        **extra.pop("container", {}),
    }
    return {"containers": [container], **extra}


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.devcluster.optimodel.io"},
    "spec": {
        "group": "devcluster.optimodel.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["minReplicas", "maxReplicas"],
                                "properties": {
                                    "minReplicas": {"type": "integer"},
                                    "maxReplicas": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.minReplicas <= self.maxReplicas",
                                        "message": "minReplicas must not exceed maxReplicas",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, low: Any, high: Any) -> dict[str, Any]:
    return {
        "apiVersion": "devcluster.optimodel.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"minReplicas": low, "maxReplicas": high},
    }


def test_crd_schema_and_cel_rule_refuse_bad_objects(dev_cluster: DevCluster, namespace: str) -> None:
    dev_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(CRD))
    dev_cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.devcluster.optimodel.io", "--timeout=30s")
    wait_for(
        "the Widget kind",
        lambda: dev_cluster.kubectl("get", "widgets", "-n", namespace, check=False).returncode == 0,
    )

    apply(dev_cluster, namespace, widget("good", 1, 3))

    bad = dev_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(widget("bad", 5, 2)), check=False
    )
    assert bad.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in bad.stderr
    wrong_type = dev_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(widget("typo", "one", 2)), check=False
    )
    assert wrong_type.returncode != 0
    assert (
        'spec.minReplicas: Invalid value: "string": spec.minReplicas in body must be of type integer'
        in wrong_type.stderr
    )
    names = [w["metadata"]["name"] for w in get_json(dev_cluster, "widgets", "-n", namespace)["items"]]
    assert names == ["good"]


def job(image: str, name: str, code: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": pod_spec(image, ["python", "-c", code], restartPolicy="Never")},
        },
    }


def job_pod(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    pods = get_json(cluster, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
    assert len(pods) == 1
    return pods[0]  # type: ignore[no-any-return]


def test_jobs_run_containers_and_report_how_they_ended(dev_cluster: DevCluster, namespace: str) -> None:
    host_message = Path("/dev/termination-log")
    host_message_before = host_message.stat().st_mtime_ns if host_message.exists() else None
    image = dev_cluster.images["serve"]
    apply(
        dev_cluster,
        namespace,
        job(image, "ok", "import sys; print('hello from', sys.executable)"),
        job(image, "bad", "open('/dev/termination-log', 'w').write('disk on fire'); raise SystemExit(3)"),
    )
    dev_cluster.kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/ok", "--timeout=60s")
    dev_cluster.kubectl("wait", "-n", namespace, "--for=condition=Failed", "job/bad", "--timeout=60s")

    ok = job_pod(dev_cluster, namespace, "ok")
    assert ok["status"]["phase"] == "Succeeded"
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    logs = dev_cluster.kubectl("logs", "-n", namespace, ok["metadata"]["name"]).stdout
    assert logs == "hello from /opt/optimodel/bin/python\n"  # the image's venv, not the host's

    bad = job_pod(dev_cluster, namespace, "bad")
    assert bad["status"]["phase"] == "Failed"
    terminated = bad["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (
        3,
        "Error",
        "disk on fire",
    )

    # The container's /dev/termination-log is its own file, never the host's.
    assert (host_message.stat().st_mtime_ns if host_message.exists() else None) == host_message_before


def web_deployment(image: str, version: str) -> dict[str, Any]:
    serve = "mkdir -p /www/site && echo $VERSION > /www/site/version && cd /www/site && exec python -m http.server 8080"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "volumes": [{"name": "www", "emptyDir": {}}],
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", serve],
                            "env": [{"name": "VERSION", "value": version}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/version", "port": "http"},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def serving_pods(cluster: DevCluster, namespace: str) -> dict[str, str]:
    """name -> pod IP of the running, not deleted web pods."""
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "app=web")["items"]
    return {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
    }


def fetch(ip: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=5) as resp:
        return str(resp.read().decode().strip())


def test_deployment_serves_on_pod_ips_and_rolls_out_an_update(dev_cluster: DevCluster, namespace: str) -> None:
    apply(dev_cluster, namespace, web_deployment(dev_cluster.images["serve"], "v1"))
    dev_cluster.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=90s")
    first = serving_pods(dev_cluster, namespace)
    assert len(first) == 2 and len(set(first.values())) == 2
    assert [fetch(ip, "/version") for ip in first.values()] == ["v1", "v1"]
    assert not Path("/www").exists()  # the mount path was made inside the pod only

    dev_cluster.kubectl("set", "env", "-n", namespace, "deployment/web", "VERSION=v2")
    dev_cluster.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=90s")
    second = wait_for("the old pods to go", lambda: (p := serving_pods(dev_cluster, namespace)) and len(p) == 2 and p)
    assert not set(second) & set(first)
    assert [fetch(ip, "/version") for ip in second.values()] == ["v2", "v2"]
    available = get_json(dev_cluster, "deployment/web", "-n", namespace)["status"]
    assert (available["availableReplicas"], available["updatedReplicas"]) == (2, 2)


def test_deleting_an_owner_collects_its_dependents(dev_cluster: DevCluster, namespace: str) -> None:
    dev_cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = get_json(dev_cluster, "configmap/owner", "-n", namespace)
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
            ],
        },
    }
    apply(dev_cluster, namespace, dependent)
    dev_cluster.kubectl("delete", "configmap/owner", "-n", namespace)
    wait_for(
        "the dependent to be collected",
        lambda: dev_cluster.kubectl("get", "configmap/dependent", "-n", namespace, check=False).returncode != 0,
        timeout=30,
    )


def test_a_user_without_rights_is_refused(dev_cluster: DevCluster, namespace: str) -> None:
    kubeconfig = dev_cluster.user_kubeconfig("alice", ["developers"])
    core = client.CoreV1Api(_client_for(kubeconfig))
    with pytest.raises(client.ApiException) as refused:
        core.list_namespaced_pod(namespace)
    assert refused.value.status == 403
    assert 'User "alice" cannot list resource "pods"' in json.loads(refused.value.body)["message"]

    dev_cluster.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=list", "--resource=pods")
    dev_cluster.kubectl("create", "rolebinding", "devs", "-n", namespace, "--role=pod-reader", "--group=developers")
    wait_for("the binding to apply", lambda: _can_list(core, namespace))


def _client_for(kubeconfig: Path) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def _can_list(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.list_namespaced_pod(namespace)
    except client.ApiException:
        return False
    return True


IN_POD = """
import json, os
from kubernetes import client, config
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
config.load_incluster_config()
core = client.CoreV1Api()
me = core.read_namespaced_pod(os.environ["POD_NAME"], open(f"{sa}/namespace").read())
try:
    core.list_namespaced_secret(me.metadata.namespace)
    secrets = "allowed"
except client.ApiException as err:
    secrets = err.status
names = ("PASSWORD", "COLOR", "CM_COLOR", "POD_NAME", "POD_IP", "NODE", "GREETING")
report = {k: os.environ.get(k) for k in names}
report.update(cwd=os.getcwd(), phase=me.status.phase, ip=me.status.pod_ip, secrets=secrets,
              path0=os.environ["PATH"].split(":")[0],
              files=sorted(f for f in os.listdir(sa) if not f.startswith("..")))  # ..data: the kubelet's atomic writer
print(json.dumps(report))
open("/dev/termination-log", "w").write(json.dumps(report))
"""


def test_a_pod_sees_its_env_and_volumes_and_calls_the_api(dev_cluster: DevCluster, namespace: str) -> None:
    dev_cluster.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cr3t")
    dev_cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=COLOR=teal")
    dev_cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    dev_cluster.kubectl("create", "role", "read-pods", "-n", namespace, "--verb=get", "--resource=pods")
    dev_cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "-n",
        namespace,
        "--role=read-pods",
        f"--serviceaccount={namespace}:reader",
    )
    env = [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "COLOR"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME)"},
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": pod_spec(
            dev_cluster.images["operator"],
            ["python", "-c", IN_POD],
            restartPolicy="Never",
            serviceAccountName="reader",
            container={
                "env": env,
                "workingDir": "/scratch/here",
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
            },
        ),
    }
    apply(dev_cluster, namespace, pod)
    done = wait_for(
        "the pod to finish",
        lambda: (
            (p := get_json(dev_cluster, "pod/probe", "-n", namespace))["status"].get("phase") in ("Succeeded", "Failed")
            and p
        ),
    )
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert done["status"]["phase"] == "Succeeded", terminated
    report = json.loads(terminated["message"])
    ip = done["status"]["podIP"]
    assert report == {
        "PASSWORD": "s3cr3t",
        "COLOR": "teal",
        "CM_COLOR": "teal",
        "POD_NAME": "probe",
        "POD_IP": ip,
        "NODE": "optimodel-node",
        "GREETING": "hi probe",
        "cwd": "/scratch/here",
        "phase": "Running",
        "ip": ip,
        "secrets": 403,
        "path0": "/opt/optimodel/bin",  # the image's venv
        "files": ["ca.crt", "namespace", "token"],
    }
    assert not Path("/scratch/here").exists()  # made inside the container only
