"""The node agent: registers the node, watches the pods bound to it and gives each a PodWorker."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

from kubernetes.client.exceptions import ApiException

from optimodel.devcluster import network, procs
from optimodel.devcluster.network import IpPool, NetworkConfig
from optimodel.devcluster.nodeagent.kube import Kube, Obj
from optimodel.devcluster.nodeagent.node import NodeRegistration
from optimodel.devcluster.nodeagent.pod import NodeContext, PodWorker

log = logging.getLogger(__name__)
WATCH_SECONDS = 300
SHUTDOWN_GRACE = 3.0


class Agent:
    """One node: `run` blocks until `stop` is set, then ends every pod's processes and cleans up."""

    def __init__(
        self,
        kubeconfig: str,
        node_name: str,
        net: NetworkConfig,
        state_dir: Path,
        api_port: int,
        max_grace: float,
        delete_bridge: bool = False,
    ) -> None:
        self.api = Kube(kubeconfig)
        self.node_name = node_name
        self.ctx = NodeContext(
            api=self.api,
            net=net,
            pool=IpPool(net),
            state_dir=state_dir,
            api_port=api_port,
            max_grace=max_grace,
        )
        self.registration = NodeRegistration(self.api, node_name, net.host_ip)
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.delete_bridge = delete_bridge

    def run(self) -> None:
        """Clean up after a previous run, register, then handle pods until stopped."""
        self._cleanup_orphans()
        self.registration.register()
        threading.Thread(target=self.registration.heartbeat, args=(self.stop,), daemon=True).start()
        threading.Thread(target=self._watch_forever, daemon=True, name="watch").start()
        self.stop.wait()
        self._shutdown()

    def _cleanup_orphans(self) -> None:
        """Processes, namespaces and files left by an agent that died: pods restart afresh."""
        for record in self.ctx.state_dir.glob("pods/*/procs/*.json"):
            procs.stop(procs.ProcessRecord.from_json(json.loads(record.read_text())), grace=1.0)
        network.cleanup_pods(self.ctx.net)
        shutil.rmtree(self.ctx.state_dir / "pods", ignore_errors=True)

    def _watch_forever(self) -> None:
        """List then watch the node's pods; relist when the watch expires or fails."""
        selector = f"spec.nodeName={self.node_name}"
        while not self.stop.is_set():
            try:
                listed = self.api.request("GET", "/api/v1/pods", query={"fieldSelector": selector})
                seen = set()
                for pod in listed.get("items") or []:
                    seen.add(pod["metadata"]["uid"])
                    self._dispatch("ADDED", pod)
                with self.lock:
                    vanished = [w for uid, w in self.workers.items() if uid not in seen]
                for worker in vanished:
                    worker.removed()
                self._watch(selector, listed["metadata"]["resourceVersion"])
            except Exception as err:
                if not self.stop.is_set():
                    log.warning("pod watch failed (%s); relisting", err)
                    self.stop.wait(1.0)

    def _watch(self, selector: str, resource_version: str) -> None:
        while not self.stop.is_set():
            query = {
                "fieldSelector": selector,
                "resourceVersion": resource_version,
                "timeoutSeconds": WATCH_SECONDS,
            }
            for event in self.api.watch("/api/v1/pods", query):
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                resource_version = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self._dispatch(event["type"], obj)

    def _dispatch(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.removed()
                return
            if worker is not None:
                worker.update(pod)
                return
            worker = PodWorker(self.ctx, pod)
            self.workers[uid] = worker
        worker.start()
        threading.Thread(target=self._forget_when_done, args=(uid, worker), daemon=True).start()

    def _forget_when_done(self, uid: str, worker: PodWorker) -> None:
        worker.join()
        with self.lock:
            if self.workers.get(uid) is worker:
                del self.workers[uid]

    def _shutdown(self) -> None:
        """End every pod's processes quickly, keep the pod objects, remove namespaces."""
        with self.lock:
            workers = list(self.workers.values())
        self.ctx.max_grace = min(self.ctx.max_grace, SHUTDOWN_GRACE)
        for worker in workers:
            worker.stop_for_shutdown()
        deadline = time.monotonic() + SHUTDOWN_GRACE + 5
        for worker in workers:
            worker.join(max(0.1, deadline - time.monotonic()))
        if self.delete_bridge:
            network.delete_bridge(self.ctx.net)
        else:
            network.cleanup_pods(self.ctx.net)
