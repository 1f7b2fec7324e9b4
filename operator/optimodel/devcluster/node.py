"""The local node: containerd, the kubelet and kube-proxy in a namespace pair of their own.

The node's processes share one network namespace (network.py) and one mount namespace made here.
In the mount namespace `/` is shared (the kubelet's mount propagation needs it) without touching
the host's, `/run` is a fresh tmpfs (containerd's shim sockets and iptables' lock live there) and
`/var` is a folder of the node's state directory (the CNI cache, /var/log/containers), and
`/etc/resolv.conf` names no server: whatever the parts write outside the paths nodeconfig.py gives
them stays inside the node and goes with it, and nothing tries to reach beyond this machine.
Pods' cgroups live under `cgroupRoot` in every cgroup v1 hierarchy; stopping the node kills what
is left there and in the mount namespace, removes the cgroups, releases both namespaces and puts
back the kernel settings the kubelet changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from optimodel.devcluster import network
from optimodel.devcluster.network import NetworkConfig
from optimodel.devcluster.nodeconfig import (
    NodeLayout,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
    resolv_conf,
)

CGROUP_ROOT = Path("/sys/fs/cgroup")
# What the kubelet sets at start (pkg/kubelet/cm: setupKernelTunables) unless protectKernelDefaults.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
NODE_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "kubelet", "kube-proxy")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
PROJECT_IMAGE_PREFIX = "localhost/optimodel-"


class NodeError(RuntimeError):
    """The node could not be set up or reached."""


@dataclass(frozen=True)
class Node:
    """One node: its layout (files, addresses) and its network."""

    layout: NodeLayout
    net: NetworkConfig

    @property
    def _ns_dir(self) -> Path:
        return self.layout.state_dir / "ns"

    @property
    def mount_ns(self) -> Path:
        """The file holding the node's mount namespace."""
        return self._ns_dir / "mnt"

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside the node."""
        return ["nsenter", f"--mount={self.mount_ns}", f"--net={self.net.netns_path}", "--"]

    # ----- set up ----------------------------------------------------------------------------
    def prepare(self, proxy_kubeconfig: Path) -> None:
        """Write the configuration, make the mount namespace, the cgroup root, and note the kernel
        settings the kubelet is about to change."""
        lay = self.layout
        for folder in (lay.config_dir, lay.cni_conf_dir, lay.containerd_dir, lay.pod_logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for sub in ("log", "lib", "tmp", "run"):
            (lay.state_dir / "var" / sub).mkdir(parents=True, exist_ok=True)
        _write(lay.config_dir / "containerd.toml", containerd_config(lay))
        _write(lay.cni_conf_dir / "10-optimodel.conflist", cni_config(lay))
        _write(lay.config_dir / "resolv.conf", resolv_conf())
        _write(lay.config_dir / "kubelet.yaml", kubelet_config(lay, lay.config_dir / "resolv.conf"))
        _write(lay.config_dir / "kube-proxy.yaml", kube_proxy_config(lay, proxy_kubeconfig))
        self._make_mount_namespace()
        for hierarchy in _hierarchies():
            (hierarchy / lay.cgroup_root.lstrip("/")).mkdir(exist_ok=True)
        saved = lay.state_dir / "sysctls.json"
        if not saved.exists():
            _write(saved, json.dumps({key: _read_sysctl(key) for key in KUBELET_SYSCTLS}))

    def _make_mount_namespace(self) -> None:
        if _is_mountpoint(self.mount_ns):
            return
        ns_dir = self._ns_dir
        ns_dir.mkdir(parents=True, exist_ok=True)
        # A persistent namespace is held by a bind mount, which must not sit on a shared mount.
        if not _is_mountpoint(ns_dir):
            _run("mount", "--bind", str(ns_dir), str(ns_dir))
            _run("mount", "--make-private", str(ns_dir))
        self.mount_ns.touch()
        var, resolv = self.layout.state_dir / "var", self.layout.config_dir / "resolv.conf"
        # The node's own resolv.conf names no server: nothing outside this machine can be reached,
        # so a pull of an image the node lacks fails at once instead of waiting on a lookup.
        setup = (
            f"mount -t tmpfs -o mode=0755 optimodel-node-run /run && mount --bind {var} /var"
            f" && mount --bind {resolv} /etc/resolv.conf && mount --make-rshared /"
        )
        _run("unshare", f"--mount={self.mount_ns}", "--propagation", "private", "sh", "-c", setup)

    def containerd_argv(self) -> list[str]:
        """containerd with the node's configuration."""
        return [
            *self.enter(),
            str(self.layout.bin_dir / "containerd"),
            f"--config={self.layout.config_dir / 'containerd.toml'}",
            "--log-level=warn",
        ]

    def kubelet_argv(self, kubeconfig: Path) -> list[str]:
        """The kubelet, registering the node under its name and address."""
        return [
            *self.enter(),
            str(self.layout.bin_dir / "kubelet"),
            f"--config={self.layout.config_dir / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.layout.kubelet_dir}",
            f"--hostname-override={self.layout.node_name}",
            f"--node-ip={self.layout.node_ip}",
            "--v=1",
        ]

    def kube_proxy_argv(self) -> list[str]:
        """kube-proxy in iptables mode."""
        return [
            *self.enter(),
            str(self.layout.bin_dir / "kube-proxy"),
            f"--config={self.layout.config_dir / 'kube-proxy.yaml'}",
            "--v=1",
        ]

    def env(self) -> dict[str, str]:
        """The node processes' environment: containerd finds the shim and runc through PATH."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(self.layout.bin_dir), env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
        return env

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """ctr in the node (image unpacking mounts must happen in the node's mount namespace)."""
        argv = [*self.enter(), str(self.layout.bin_dir / "ctr"), f"--address={self.layout.containerd_socket}"]
        return subprocess.run(
            [*argv, "--namespace=k8s.io", *args], capture_output=True, text=True, timeout=timeout, env=self.env()
        )

    def containerd_ready(self) -> bool:
        """True once containerd answers on its socket."""
        return self.ctr("version", timeout=10).returncode == 0

    def import_images(self, archives: list[Path]) -> list[str]:
        """Import each docker-archive whose image the node lacks and remove the project's images
        that no archive offers any more (earlier builds); returns the names imported."""
        present = set(self.ctr("images", "list", "--quiet").stdout.split())
        offered = {archive: [_normalized(n) for n in _archive_names(archive)] for archive in archives}
        imported = []
        for archive, names in offered.items():
            if names and all(n in present for n in names):
                continue
            # The layers' blobs go once unpacked: the node needs the snapshots, and a second copy of
            # the optimizer's gigabytes would only fill the disk.
            proc = self.ctr("images", "import", "--local", "--discard-unpacked-layers", str(archive))
            if proc.returncode != 0:
                raise NodeError(f"importing {archive}: {proc.stderr.strip()}")
            imported += names
        current = {n for names in offered.values() for n in names}
        stale = [n for n in present if n.startswith(PROJECT_IMAGE_PREFIX) and n not in current]
        if stale:
            self.ctr("images", "remove", *stale)
        return imported

    # ----- tear down -------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Kill whatever still runs in the node, remove its cgroups, namespaces and link, and put
        back the kernel settings the kubelet changed. Safe to call twice, and on a half-made node."""
        # runc also mirrors the pods' cgroups in the hybrid layout's cgroup2 mount (`unified`).
        cgroups = [hierarchy / self.layout.cgroup_root.lstrip("/") for hierarchy in _hierarchies(unified=True)]
        ns_id = _ns_id(self.mount_ns)
        for _ in range(50):
            pids = {pid for cg in cgroups for pid in _cgroup_pids(cg)} | _pids_in_mount_ns(ns_id)
            pids.discard(os.getpid())
            if not pids:
                break
            for pid in pids:
                _kill(pid)
            time.sleep(0.1)
        for cg in cgroups:
            _remove_cgroup_tree(cg)
        if _is_mountpoint(self.mount_ns):
            _run("umount", str(self.mount_ns), check=False)
        if _is_mountpoint(self._ns_dir):
            _run("umount", str(self._ns_dir), check=False)
        network.delete(self.net)
        self._restore_sysctls()

    def _restore_sysctls(self) -> None:
        saved = self.layout.state_dir / "sysctls.json"
        if not saved.exists():
            return
        for key, value in json.loads(saved.read_text()).items():
            # Only what the kubelet set: a value someone changed since is theirs.
            if value is not None and _read_sysctl(key) == KUBELET_SYSCTLS[key]:
                Path("/proc/sys", key).write_text(value)
        saved.unlink()


def missing_node_binaries(bin_dir: Path, cni_bin_dir: Path) -> list[str]:
    """Names of the node's binaries and CNI plugins that are not there."""
    missing = [b for b in NODE_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    return missing + [f"cni/{p}" for p in CNI_PLUGINS if not os.access(cni_bin_dir / p, os.X_OK)]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _run(*argv: str, check: bool = True) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def _is_mountpoint(path: Path) -> bool:
    target = str(path.resolve()) if path.exists() else str(path)
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == target for line in info)


def _hierarchies(unified: bool = False) -> list[Path]:
    """The cgroup v1 hierarchies (each controller mount and the named systemd one), and with
    `unified` the cgroup2 mount a hybrid layout has beside them."""
    if not CGROUP_ROOT.is_dir():
        return []
    return [
        p
        for p in sorted(CGROUP_ROOT.iterdir())
        if p.is_dir() and not p.is_symlink() and (unified or p.name != "unified")
    ]


def _cgroup_pids(cgroup: Path) -> set[int]:
    if not cgroup.is_dir():
        return set()
    pids: set[int] = set()
    for procs_file in cgroup.rglob("cgroup.procs"):
        try:
            pids.update(int(line) for line in procs_file.read_text().split())
        except OSError:
            continue
    return pids


def _remove_cgroup_tree(cgroup: Path) -> None:
    if not cgroup.is_dir():
        return
    for sub in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()


def _ns_id(path: Path) -> int | None:
    """The inode of a namespace file (what /proc/PID/ns/mnt names), None when not bound."""
    if not _is_mountpoint(path):
        return None
    return os.stat(path).st_ino


def _pids_in_mount_ns(ns_id: int | None) -> set[int]:
    if ns_id is None:
        return set()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "mnt").st_ino == ns_id:
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _read_sysctl(key: str) -> str | None:
    try:
        return Path("/proc/sys", key).read_text().strip()
    except OSError:
        return None


def _archive_names(archive: Path) -> list[str]:
    """The image names a docker-archive carries (manifest.json's RepoTags)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            return []
        return [tag for entry in json.load(member) for tag in entry.get("RepoTags") or []]


def _normalized(name: str) -> str:
    """An image name as containerd lists it (docker.io/library/ added to short names)."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"
