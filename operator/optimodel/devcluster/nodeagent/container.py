"""One container of a pod as a local process: start it in its sandbox, restart it as the pod's
restartPolicy says (with backoff), probe it, and keep its Kubernetes container status."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimodel.devcluster import procs
from optimodel.devcluster.nodeagent import sandbox
from optimodel.devcluster.nodeagent.envvars import container_env, expand
from optimodel.devcluster.nodeagent.kube import Kube, Obj
from optimodel.devcluster.nodeagent.probes import run_probe
from optimodel.devcluster.nodeagent.refs import ConfigError
from optimodel.devcluster.nodeagent.volumes import container_mounts

log = logging.getLogger(__name__)
MAX_BACKOFF = 20.0
MESSAGE_LIMIT = 4096


def now() -> str:
    """An RFC 3339 timestamp, as the API wants it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class PodContext:
    """What the containers of one pod share."""

    api: Kube
    pod: Callable[[], Obj]  # the latest pod object, with podIP filled in
    runtime_dir: Path  # removed when the pod goes
    log_dir: Path  # kept: container output
    netns: str
    pod_ip: str
    host_ip: str
    api_port: int
    volumes: dict[str, str]
    lock: threading.RLock
    changed: Callable[[], None]  # something in a status changed: publish


class StartError(Exception):
    """The container cannot be started at all (no command)."""


class ContainerRunner(threading.Thread):
    """Runs one container until it finishes for good (per restartPolicy) or is stopped."""

    def __init__(self, ctx: PodContext, spec: Obj, init: bool, restart_policy: str) -> None:
        super().__init__(daemon=True, name=f"container-{spec['name']}")
        self.ctx, self.spec, self.init, self.policy = ctx, spec, init, restart_policy
        self.name: str = spec["name"]
        self.dir = ctx.runtime_dir / "containers" / self.name
        self.status: Obj = {
            "name": self.name,
            "image": spec.get("image", ""),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
            "lastState": {},
        }
        self.exit_code: int | None = None
        self.done = threading.Event()
        self._halt = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sandbox_spec: Obj = {}
        self._ready_ok = self._ready_fail = self._live_fails = 0

    # ----- status ------------------------------------------------------------------------------
    def snapshot(self) -> Obj:
        """A copy of the container status."""
        with self.ctx.lock:
            return copy.deepcopy(self.status)

    def _update(self, **fields: Any) -> None:
        with self.ctx.lock:
            self.status.update(fields)
        self.ctx.changed()

    # ----- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        backoff = 1.0
        try:
            while not self._halt.is_set():
                started = time.monotonic()
                try:
                    code = self._run_once()
                except ConfigError as err:
                    self._update(state={"waiting": {"reason": "CreateContainerConfigError", "message": str(err)}})
                    if self._halt.wait(backoff):
                        break
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                if self._halt.is_set() or not self._restarts(code):
                    self.exit_code = code
                    break
                backoff = 1.0 if time.monotonic() - started > 10 else backoff
                with self.ctx.lock:
                    self.status["restartCount"] += 1
                    self.status["lastState"] = self.status["state"]
                self._update(
                    state={
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {backoff:.0f}s restarting failed container",
                        }
                    }
                )
                if self._halt.wait(backoff):
                    break
                backoff = min(backoff * 2, MAX_BACKOFF)
        except Exception as err:  # one container's failure must not kill the agent
            log.exception("container %s failed", self.name)
            self.exit_code = 128
            self._update(
                state={
                    "terminated": {
                        "exitCode": 128,
                        "reason": "Error",
                        "message": str(err),
                        "startedAt": now(),
                        "finishedAt": now(),
                    }
                }
            )
        finally:
            self.done.set()
            self.ctx.changed()

    def _restarts(self, code: int) -> bool:
        if self.init:
            return code != 0 and self.policy != "Never"
        return self.policy == "Always" or (self.policy == "OnFailure" and code != 0)

    def _run_once(self) -> int:
        """Start the process, wait for it, record how it ended; returns its exit code."""
        started = now()
        try:
            proc = self._start()
        except StartError as err:
            self._update(
                state={
                    "terminated": {
                        "exitCode": 128,
                        "reason": "StartError",
                        "message": str(err),
                        "startedAt": started,
                        "finishedAt": now(),
                    }
                },
                ready=False,
            )
            return 128
        self._ready_ok = self._ready_fail = self._live_fails = 0
        self._update(
            state={"running": {"startedAt": started}},
            started=True,
            containerID=f"process://{proc.pid}",
            ready=False,
        )
        ended = threading.Event()
        self._start_probes(proc, ended)
        code = proc.wait()
        ended.set()
        _killpg(proc.pid, signal.SIGKILL)  # leftovers of the container, like a cgroup kill
        code = 128 - code if code < 0 else code
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": now(),
            "containerID": f"process://{proc.pid}",
        }
        message = self._termination_message(code)
        if message:
            terminated["message"] = message
        self._update(state={"terminated": terminated}, ready=False, started=False)
        return code

    def _start(self) -> subprocess.Popen[bytes]:
        pod = self.ctx.pod()
        argv = list(self.spec.get("command") or []) + list(self.spec.get("args") or [])
        if not argv:
            raise StartError(
                "container has neither command nor args: the optimodel node agent runs command+args as a "
                "local process and ignores the image"
            )
        env = container_env(self.ctx.api, pod, self.spec, self.ctx.host_ip, self.ctx.api_port)
        argv = [expand(a, env) for a in argv]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "root").mkdir(exist_ok=True)
        message_file = self.dir / "termination-log"
        message_file.write_bytes(b"")
        message_file.chmod(0o666)
        mounts = container_mounts(self.spec, self.ctx.volumes)
        mounts.append(
            {
                "source": str(message_file),
                "target": self.spec.get("terminationMessagePath") or "/dev/termination-log",
            }
        )
        self._sandbox_spec = {
            "netns": f"/run/netns/{self.ctx.netns}",
            "root": str(self.dir / "root"),
            "mounts": mounts,
            "env": env,
            "workingDir": self.spec.get("workingDir") or "/",
            "terminationMessagePath": self.spec.get("terminationMessagePath"),
        }
        spec_file = self.dir / "sandbox.json"
        spec_file.write_text(json.dumps({**self._sandbox_spec, "argv": argv}))
        self.ctx.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.ctx.log_dir / f"{self.name}.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", sandbox.__file__, str(spec_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self._proc = proc
        record = procs.ProcessRecord(self.name, proc.pid, procs.start_time_of(proc.pid) or 0)
        (self.ctx.runtime_dir / "procs").mkdir(exist_ok=True)
        (self.ctx.runtime_dir / "procs" / f"{self.name}.json").write_text(json.dumps(record.to_json()))
        return proc

    def _termination_message(self, code: int) -> str:
        try:
            message = (self.dir / "termination-log").read_bytes()[:MESSAGE_LIMIT].decode(errors="replace")
        except OSError:
            message = ""
        if not message and code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                with open(self.ctx.log_dir / f"{self.name}.log", "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 2048))
                    message = f.read().decode(errors="replace")
            except OSError:
                pass
        return message

    # ----- probes ------------------------------------------------------------------------------
    def _start_probes(self, proc: subprocess.Popen[bytes], ended: threading.Event) -> None:
        readiness, liveness = self.spec.get("readinessProbe"), self.spec.get("livenessProbe")
        if readiness:
            threading.Thread(target=self._probe_loop, args=(readiness, ended, self._on_readiness), daemon=True).start()
        else:
            self._update(ready=True)
        if liveness:
            threading.Thread(
                target=self._probe_loop,
                args=(liveness, ended, lambda ok: self._on_liveness(ok, proc)),
                daemon=True,
            ).start()

    def _probe_loop(self, probe: Obj, ended: threading.Event, on_result: Callable[[bool], None]) -> None:
        period = float(probe.get("periodSeconds", 10))
        if ended.wait(float(probe.get("initialDelaySeconds", 0))):
            return
        while not ended.is_set():
            on_result(run_probe(probe, self.ctx.pod_ip, self.spec, self._exec))
            if ended.wait(period):
                return

    def _on_readiness(self, ok: bool) -> None:
        probe = self.spec["readinessProbe"]
        self._ready_ok, self._ready_fail = (self._ready_ok + 1, 0) if ok else (0, self._ready_fail + 1)
        if ok and self._ready_ok >= probe.get("successThreshold", 1) and not self.status["ready"]:
            self._update(ready=True)
        elif not ok and self._ready_fail >= probe.get("failureThreshold", 3) and self.status["ready"]:
            self._update(ready=False)

    def _on_liveness(self, ok: bool, proc: subprocess.Popen[bytes]) -> None:
        self._live_fails = 0 if ok else self._live_fails + 1
        if self._live_fails >= self.spec["livenessProbe"].get("failureThreshold", 3):
            log.info("container %s failed its liveness probe: killing it", self.name)
            self._live_fails = 0
            _killpg(proc.pid, signal.SIGKILL)

    def _exec(self, argv: list[str], timeout: float) -> int:
        """Run a probe command inside the container's sandbox."""
        spec_file = self.dir / f"probe-{threading.get_ident()}.json"
        spec_file.write_text(json.dumps({**self._sandbox_spec, "argv": argv}))
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", sandbox.__file__, str(spec_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -1

    # ----- stopping ----------------------------------------------------------------------------
    def terminate(self) -> None:
        """Ask the container to stop: no more restarts, SIGTERM to its process group."""
        self._halt.set()
        if self._proc is not None and self._proc.poll() is None:
            _killpg(self._proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL whatever is left of the container."""
        self._halt.set()
        if self._proc is not None:
            _killpg(self._proc.pid, signal.SIGKILL)


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
