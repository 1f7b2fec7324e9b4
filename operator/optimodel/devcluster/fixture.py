"""The object the `dev_cluster` pytest fixture returns, and how it is made.

Kept out of conftest.py so that benchmarks and scripts can start a throwaway cluster the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import config
from kubernetes.client import ApiClient

from optimodel.devcluster.controlplane import ClusterError, ControlPlane, default_bin_dir, missing_binaries


@dataclass
class DevCluster:
    """A running cluster as tests see it.

    kubeconfig: admin kubeconfig (system:masters); host_ip: the bridge address pods can reach
    (bind test servers there); api_port: the API server's port; state_dir: logs and files.
    """

    kubeconfig: Path
    host_ip: str
    api_port: int
    state_dir: Path
    kubectl_bin: Path
    plane: ControlPlane | None = field(default=None, repr=False)

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

    def api_client(self) -> ApiClient:
        """A kubernetes client authenticated as the admin."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _plane(self) -> ControlPlane:
        if self.plane is None:
            raise ClusterError("this cluster was given by OPTIMODEL_TEST_KUBECONFIG: no CA to mint credentials")
        return self.plane


def start_throwaway(state_dir: Path | None = None) -> DevCluster:
    """A fresh cluster in a temporary directory on free ports with a bridge of its own."""
    bin_dir = default_bin_dir()
    missing = missing_binaries(bin_dir)
    if missing:
        raise ClusterError(f"missing {', '.join(missing)} in {bin_dir}: run `make k8s-bins`")
    state = state_dir or Path(tempfile.mkdtemp(prefix="optimodel-cluster-"))
    plane = ControlPlane(state, bin_dir, tie_to_caller=True)
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
