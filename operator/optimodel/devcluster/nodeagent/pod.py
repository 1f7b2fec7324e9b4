"""One pod on the node: its network, volumes, init containers then containers, its status, and
its end (SIGTERM, grace period, SIGKILL, cleanup, final delete)."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client.exceptions import ApiException

from optimodel.devcluster import network
from optimodel.devcluster.network import IpPool, NetworkConfig
from optimodel.devcluster.nodeagent.container import ContainerRunner, PodContext, now
from optimodel.devcluster.nodeagent.kube import Kube, Obj, is_not_found, pod_path
from optimodel.devcluster.nodeagent.refs import ConfigError
from optimodel.devcluster.nodeagent.volumes import materialize

log = logging.getLogger(__name__)
TERMINAL = ("Succeeded", "Failed")


@dataclass
class NodeContext:
    """What every pod worker of the agent shares."""

    api: Kube
    net: NetworkConfig
    pool: IpPool
    state_dir: Path
    api_port: int
    max_grace: float  # cap on terminationGracePeriodSeconds


class PodWorker(threading.Thread):
    """Drives one pod from its first sight on the node until it is gone."""

    def __init__(self, node: NodeContext, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{meta['namespace']}/{meta['name']}")
        self.node, self.pod, self.uid = node, pod, str(meta["uid"])
        self.path = pod_path(meta["namespace"], meta["name"])
        self.runtime_dir = node.state_dir / "pods" / self.uid
        self.log_dir = node.state_dir / "logs" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.deleting = threading.Event()
        self.gone = threading.Event()
        self.shutdown = False
        self.init_runners: list[ContainerRunner] = []
        self.runners: list[ContainerRunner] = []
        self.pod_ip: str | None = None
        self.netns: str | None = None
        self.initialized = False
        self.final_phase: str | None = None
        self.start_time = now()
        self._published: Obj | None = None
        self._transitions: dict[str, tuple[str, str]] = {}
        self.update(pod)

    # ----- signals from the agent ------------------------------------------------------------
    def update(self, pod: Obj) -> None:
        """A newer version of the pod was seen."""
        with self.lock:
            self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()
        self.wake.set()

    def removed(self) -> None:
        """The pod object is gone from the API."""
        self.gone.set()
        self.deleting.set()
        self.wake.set()

    def stop_for_shutdown(self) -> None:
        """The agent stops: end the containers, keep the pod object."""
        self.shutdown = True
        self.deleting.set()
        self.wake.set()

    # ----- the lifecycle ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            finished = (self.pod.get("status") or {}).get("phase") in TERMINAL
            if not finished and not self.deleting.is_set():
                self._lifecycle()
        except Exception as err:  # one pod's failure must not kill the agent
            log.exception("pod %s failed", self.label)
            self.final_phase = "Failed"
            self._publish(reason="NodeAgentError", message=str(err))
        try:
            self.deleting.wait()
            self._terminate()
            if not self.shutdown and not self.gone.is_set() and self.final_phase is None and self.pod_ip:
                # like a kubelet: a deleted pod ends in a terminal phase (Jobs count on it)
                exits = [r.exit_code for r in self.runners]
                self.final_phase = "Succeeded" if exits and all(c == 0 for c in exits) else "Failed"
                self._publish()
        finally:
            self._teardown()
            if not self.shutdown and not self.gone.is_set():
                self._delete()

    def _lifecycle(self) -> None:
        ip = self.node.pool.allocate()
        try:
            self.netns = network.create_pod_network(self.node.net, ip)
        except Exception:
            self.node.pool.release(ip)
            raise
        self.pod_ip = ip
        log.info("pod %s: starting at %s", self.label, ip)
        self._publish()
        volumes = self._volumes()
        if volumes is None:
            return
        ctx = PodContext(
            api=self.node.api,
            pod=self._pod_view,
            runtime_dir=self.runtime_dir,
            log_dir=self.log_dir,
            netns=self.netns,
            pod_ip=self.pod_ip,
            host_ip=self.node.net.host_ip,
            api_port=self.node.api_port,
            volumes=volumes,
            lock=self.lock,
            changed=self._changed,
        )
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for spec in self.pod["spec"].get("initContainers") or []:
            runner = ContainerRunner(ctx, spec, init=True, restart_policy=policy)
            self.init_runners.append(runner)
            runner.start()
            if not self._wait_until(lambda r=runner: r.done.is_set()):
                return
            if runner.exit_code != 0:
                self.final_phase = "Failed"
                self._publish()
                return
        self.initialized = True
        self.runners = [
            ContainerRunner(ctx, spec, init=False, restart_policy=policy) for spec in self.pod["spec"]["containers"]
        ]
        for runner in self.runners:
            runner.start()
        self._publish()
        if not self._wait_until(lambda: all(r.done.is_set() for r in self.runners)):
            return
        self.final_phase = "Succeeded" if all(r.exit_code == 0 for r in self.runners) else "Failed"
        self._publish()
        self._teardown_network()

    def _wait_until(self, condition: object) -> bool:
        """Block until `condition()` holds (True) or the pod is being deleted (False)."""
        assert callable(condition)
        while not self.deleting.is_set():
            if condition():
                return True
            self.wake.wait()
            self.wake.clear()
        return False

    def _volumes(self) -> dict[str, str] | None:
        """Materialize the volumes, retrying while a referenced object is missing."""
        backoff = 0.5
        while not self.deleting.is_set():
            try:
                return materialize(self.node.api, self._pod_view(), self.runtime_dir / "volumes")
            except ConfigError as err:
                self._publish(waiting={"reason": "ContainerCreating", "message": str(err)})
            if self.deleting.wait(backoff):
                break
            backoff = min(backoff * 2, 10)
        return None

    def _pod_view(self) -> Obj:
        """The latest pod object with the fields this node decides (pod IP, host IP) filled in."""
        with self.lock:
            pod = copy.deepcopy(self.pod)
        status = pod.setdefault("status", {})
        status["hostIP"] = self.node.net.host_ip
        status["hostIPs"] = [{"ip": self.node.net.host_ip}]
        if self.pod_ip:
            status["podIP"], status["podIPs"] = self.pod_ip, [{"ip": self.pod_ip}]
        return pod

    # ----- ending ------------------------------------------------------------------------------
    def _terminate(self) -> None:
        """SIGTERM every container, wait the grace period (capped), then SIGKILL."""
        runners = self.init_runners + self.runners
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30))
        grace = min(float(grace), self.node.max_grace)
        for runner in runners:
            runner.terminate()
        deadline = time.monotonic() + grace
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        for runner in runners:
            runner.kill()
            runner.join(5)

    def _teardown_network(self) -> None:
        """Give back the namespace and the address, once: the address may soon be another pod's."""
        if self.netns is not None and self.pod_ip is not None:
            network.delete_pod_network(self.node.net, self.pod_ip)
            self.node.pool.release(self.pod_ip)
            self.netns = None

    def _teardown(self) -> None:
        log.info("pod %s: cleaning up (phase %s)", self.label, self.final_phase or self._phase())
        self._teardown_network()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def _delete(self) -> None:
        """Remove the pod object for good once its processes are gone (grace 0, this pod's uid)."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            self.node.api.delete(self.path, body)
        except ApiException as err:
            if not is_not_found(err) and err.status != 409:
                log.warning("deleting pod %s: %s", self.label, err.reason)

    # ----- status ------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """namespace/name, for logs."""
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def _changed(self) -> None:
        self.wake.set()
        if not self.shutdown:  # the agent is going away: leave the last status as it was
            self._publish()

    def _phase(self) -> str:
        if self.final_phase:
            return self.final_phase
        if self.initialized and any(r.status["started"] or r.status["restartCount"] for r in self.runners):
            return "Running"
        return "Pending"

    def _condition(self, ctype: str, ok: bool, reason: str | None = None) -> Obj:
        status = "True" if ok else "False"
        previous = self._transitions.get(ctype)
        if previous is None or previous[0] != status:
            self._transitions[ctype] = (status, now())
        cond: Obj = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._transitions[ctype][1],
        }
        if not ok and reason:
            cond["reason"] = reason
        return cond

    def _publish(self, waiting: Obj | None = None, reason: str | None = None, message: str | None = None) -> None:
        """Write the pod status when it changed (merge patch on the status subresource)."""
        with self.lock:
            phase = self._phase()
            statuses = [r.snapshot() for r in self.runners]
            inits = [r.snapshot() for r in self.init_runners]
            ready = bool(statuses) and all(s["ready"] for s in statuses) and phase == "Running"
            not_ready = "PodCompleted" if phase in TERMINAL else "ContainersNotReady"
            conditions = [
                self._condition("PodReadyToStartContainers", self.pod_ip is not None),
                self._condition("Initialized", self.initialized, "ContainersNotInitialized"),
                self._condition("Ready", ready, not_ready),
                self._condition("ContainersReady", ready, not_ready),
                self._condition("PodScheduled", True),
            ]
            status: Obj = {
                "phase": phase,
                "conditions": conditions,
                "startTime": self.start_time,
                "hostIP": self.node.net.host_ip,
                "hostIPs": [{"ip": self.node.net.host_ip}],
                "initContainerStatuses": self._with_waiting(inits, "initContainers", waiting) or None,
                "containerStatuses": self._with_waiting(statuses, "containers", waiting),
                "reason": reason,
                "message": message,
            }
            if self.pod_ip:
                status["podIP"], status["podIPs"] = self.pod_ip, [{"ip": self.pod_ip}]
            if status == self._published:
                return
            try:
                self.node.api.merge_patch(f"{self.path}/status", {"status": status})
                self._published = json.loads(json.dumps(status))
            except ApiException as err:
                if not is_not_found(err):
                    log.warning("status of pod %s: %s %s", self.label, err.status, err.reason)

    def _with_waiting(self, statuses: list[Obj], key: str, waiting: Obj | None) -> list[Obj]:
        """Statuses of the containers that have a runner, plus waiting ones for the rest."""
        known = {s["name"] for s in statuses}
        default = waiting or {"reason": "PodInitializing" if key == "containers" else "ContainerCreating"}
        rest = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": default},
                "lastState": {},
            }
            for c in self.pod["spec"].get(key) or []
            if c["name"] not in known
        ]
        return statuses + rest
