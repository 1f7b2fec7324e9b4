"""The object the `dev_cluster` pytest fixture returns, and how it is made.

Kept out of conftest.py so that benchmarks and scripts can start a throwaway cluster the same way.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml
from kubernetes import config
from kubernetes.client import ApiClient

from optimodel.devcluster.controlplane import (
    ClusterError,
    ControlPlane,
    default_bin_dir,
    default_images_dir,
    missing_binaries,
)


@dataclass
class DevCluster:
    """A running cluster as tests see it.

    kubeconfig: admin kubeconfig (system:masters); host_ip: the host's address on the node's link,
    which pods can reach (bind test servers there); api_port: the API server's port; state_dir:
    logs and files; images: the project's images the node has, by role (operator, job, serve).
    """

    kubeconfig: Path
    host_ip: str
    api_port: int
    state_dir: Path
    kubectl_bin: Path
    plane: ControlPlane | None = field(default=None, repr=False)
    images: dict[str, str] = field(default_factory=lambda: project_images(default_images_dir()))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl (the built v1.36) with the admin kubeconfig; output captured as text."""
        proc = subprocess.run(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] | list[str] = ()) -> Path:
        """A kubeconfig acting as `user` in `groups` (client certificate)."""
        return self._plane().user_kubeconfig(user, groups)

    def service_account_token(self, namespace: str, name: str) -> str:
        """A token of that ServiceAccount (TokenRequest API)."""
        return self._plane().service_account_token(namespace, name)

    def restart_api_server(self) -> None:
        """Stop the API server and start it again; returns once it is ready."""
        self._plane().restart_api_server()

    def kill_container(self, container_id: str) -> None:
        """SIGKILL a container through the node's containerd, as a crash or the OOM killer would;
        `container_id` as the pod's status gives it (`containerd://<id>`)."""
        plane = self._plane()
        state = plane.load_state()
        if state is None:
            raise ClusterError(f"no cluster recorded in {plane.state_dir}")
        killed = plane.node(state).ctr("task", "kill", "--signal", "SIGKILL", container_id.removeprefix("containerd://"))
        if killed.returncode != 0:
            raise ClusterError(f"cannot kill container {container_id}: {killed.stderr.strip()}")

    def api_client(self) -> ApiClient:
        """A kubernetes client authenticated as the admin."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _plane(self) -> ControlPlane:
        if self.plane is None:
            raise ClusterError("this cluster was given by OPTIMODEL_TEST_KUBECONFIG: no CA to mint credentials")
        return self.plane


def project_images(images_dir: Path) -> dict[str, str]:
    """The project's images `make images` built, by role, from the chart values it wrote beside
    the archives (`.dev/images.yaml`); empty when it has not run."""
    values = images_dir.parent / "images.yaml"
    if not values.exists():
        return {}
    images = yaml.safe_load(values.read_text())["image"]
    return {role: f"{images[role]['repository']}:{images[role]['tag']}" for role in ("operator", "job", "serve")}


def shared_image_store() -> Path | None:
    """The image store test clusters share across sessions (in the build cache, beside the images),
    locked for as long as this process lives; None when another session holds it.

    Importing the optimizer image (TensorFlow, gigabytes) takes a minute; a store that already
    holds this build's images imports nothing. A second session at the same time gets its own.
    """
    xdg_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = Path(os.environ.get("OPTIMODEL_CACHE") or xdg_cache / "optimodel")
    store = cache / "node-image-store"
    store.parent.mkdir(parents=True, exist_ok=True)
    lock = open(store.with_suffix(".lock"), "w")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    _held_locks.append(lock)
    return store


_held_locks: list[IO[str]] = []


def start_throwaway(state_dir: Path | None = None) -> DevCluster:
    """A fresh cluster in a temporary directory on free ports with a node network of its own."""
    bin_dir = default_bin_dir()
    missing = missing_binaries(bin_dir)
    if missing:
        raise ClusterError(f"missing {', '.join(missing)} in {bin_dir}: run `make k8s-bins`")
    state = state_dir or Path(tempfile.mkdtemp(prefix="optimodel-cluster-"))
    plane = ControlPlane(state, bin_dir, tie_to_caller=True, image_store=shared_image_store())
    plane.up(None)
    return DevCluster(plane.kubeconfig, plane.host_ip, plane.api_port, plane.state_dir, bin_dir / "kubectl", plane)


def from_kubeconfig(kubeconfig: Path) -> DevCluster:
    """A cluster someone else runs (OPTIMODEL_TEST_KUBECONFIG); a `make cluster` state dir is used
    for minting credentials when the kubeconfig lives in one."""
    state_dir = kubeconfig.resolve().parent
    plane = ControlPlane(state_dir) if (state_dir / "cluster.json").exists() else None
    if plane is not None:
        return DevCluster(kubeconfig, plane.host_ip, plane.api_port, state_dir, default_bin_dir() / "kubectl", plane)
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    return DevCluster(kubeconfig, host, int(port), state_dir, default_bin_dir() / "kubectl")


def stop(cluster: DevCluster, remove_state: bool) -> None:
    """Stop a throwaway cluster and (when asked) delete its state directory."""
    if cluster.plane is None:
        return
    cluster.plane.down()
    if remove_state:
        shutil.rmtree(cluster.state_dir, ignore_errors=True)


def reused_kubeconfig() -> Path | None:
    """The kubeconfig named by OPTIMODEL_TEST_KUBECONFIG, if any."""
    value = os.environ.get("OPTIMODEL_TEST_KUBECONFIG")
    return Path(value) if value else None
