"""The Node object and its heartbeat: a Lease in kube-node-lease renewed every 10 s and the
Ready condition in the node status."""

from __future__ import annotations

import os
import platform
import threading
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from optimodel.devcluster.nodeagent.kube import Kube, Obj, is_not_found

LEASE_SECONDS = 40
RENEW_SECONDS = 10
KUBELET_PORT = 10250
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _micro_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class NodeRegistration:
    """Creates the Node, keeps it Ready and its Lease fresh until `stop` is set."""

    def __init__(self, api: Kube, name: str, host_ip: str, max_pods: int = 110) -> None:
        self.api, self.name, self.host_ip, self.max_pods = api, name, host_ip, max_pods
        self.since = _now()

    def register(self) -> None:
        """Create the Node (or reuse it after an agent restart) and post a Ready status."""
        arch = _ARCH.get(platform.machine(), platform.machine())
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": arch,
                },
            },
        }
        try:
            self.api.create("/api/v1/nodes", node)
        except ApiException as err:
            if err.status != 409:
                raise
        self._untaint()
        self.post_status()
        self.renew_lease()

    def _untaint(self) -> None:
        """Drop the not-ready taint the TaintNodesByCondition admission plugin puts on a new Node
        (the node lifecycle controller, which would lift it, is not run)."""
        taints = self.api.get(f"/api/v1/nodes/{self.name}").get("spec", {}).get("taints") or []
        kept = [t for t in taints if t["key"] != "node.kubernetes.io/not-ready"]
        if kept != taints:
            self.api.merge_patch(f"/api/v1/nodes/{self.name}", {"spec": {"taints": kept or None}})

    def post_status(self) -> None:
        """Ready, sizes, addresses and the kubelet endpoint (for `kubectl logs`)."""
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        sizes = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory}Ki",
            "pods": str(self.max_pods),
            "ephemeral-storage": "100Gi",
        }
        beat = _now()

        def cond(ctype: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": beat,
                "lastTransitionTime": self.since,
            }

        status: dict[str, Any] = {
            "capacity": sizes,
            "allocatable": sizes,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
                cond("Ready", "True", "KubeletReady", "optimodel node agent is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "optimodel node agent (pods are local processes)",
                "containerRuntimeVersion": "process://1",
                "kubeletVersion": "v1.36.3",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _ARCH.get(platform.machine(), platform.machine()),
            },
        }
        self.api.merge_patch(f"/api/v1/nodes/{self.name}/status", {"status": status})

    def renew_lease(self) -> None:
        """Create or renew the node's Lease."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec: Obj = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": _micro_now(),
        }
        try:
            self.api.merge_patch(path, {"spec": spec})
        except ApiException as err:
            if not is_not_found(err):
                raise
            self.api.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                    "spec": spec,
                },
            )

    def heartbeat(self, stop: threading.Event) -> None:
        """Renew the Lease every 10 s and the status every 40 s; survives API errors."""
        beats = 0
        while not stop.wait(RENEW_SECONDS):
            beats += 1
            try:
                self.renew_lease()
                if beats % 4 == 0:
                    self.post_status()
            except Exception:  # the API server may be restarting: try again next beat
                continue
