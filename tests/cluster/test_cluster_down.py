"""`optimodel cluster down` (what `make cluster-down` runs) leaves nothing behind.

A second cluster of its own, beside the session's, runs a pod behind a NodePort Service (so that
kube-proxy and the kubelet wrote iptables rules, containerd mounted a root filesystem and a pod
network namespace, the kubelet made cgroups and changed kernel settings), then goes down. Every
kind of thing it made is looked for afterwards: processes, mounts, network namespaces, links,
iptables rules, cgroups, kernel settings.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from optimodel.devcluster.controlplane import ControlPlane, default_images_dir
from optimodel.devcluster.fixture import DevCluster
from optimodel.devcluster.node import KUBELET_SYSCTLS
from tests.support.polling import wait_for


def _processes_mentioning(text: str) -> list[str]:
    """Live (not zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z" and text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _object_stores(link: str) -> list[str]:
    """The object store processes of the node on `link`: every pod of that node lives in cgroups
    under `optimodel-<link>` (the kubelet's cgroupRoot), other clusters' stores elsewhere."""
    found = []
    for process in _processes_mentioning("/versitygw --port"):
        try:
            cgroups = Path("/proc", process.split(":", 1)[0], "cgroup").read_text()
        except OSError:
            continue
        if f"/optimodel-{link}/" in cgroups:
            found.append(process)
    return found


def _sysctls() -> dict[str, str]:
    return {key: Path("/proc/sys", key).read_text().strip() for key in KUBELET_SYSCTLS}


def test_cluster_down_leaves_nothing_behind(dev_cluster: DevCluster, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    serve = dev_cluster.images["serve"]
    wanted = ("optimodel-pause", "coredns", "versitygw", serve.split("/")[-1].replace(":", "_"))
    for archive in default_images_dir().glob("*.tar"):
        if any(name in archive.name for name in wanted):
            (images / archive.name).symlink_to(archive.resolve())
    sysctls_before = _sysctls()
    state = tmp_path / "cluster"
    plane = ControlPlane(state, images_dir=images, tie_to_caller=True)
    try:
        cluster = plane.up(None)
        node = plane.node(cluster)
        kubectl = [str(plane.bin_dir / "kubectl"), f"--kubeconfig={plane.kubeconfig}"]
        manifests = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "sleeper", "namespace": "default", "labels": {"app": "sleeper"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": serve, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
                    ]
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "sleeper", "namespace": "default"},
                "spec": {"type": "NodePort", "selector": {"app": "sleeper"}, "ports": [{"port": 80}]},
            },
        ]
        subprocess.run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump_all(manifests), text=True, check=True)
        subprocess.run([*kubectl, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s"], check=True)
        rules = wait_for(
            "kube-proxy's rules for the Service",
            lambda: (out := subprocess.run([*node.enter(), "iptables-save"], capture_output=True, text=True).stdout)
            and "default/sleeper" in out
            and out,
        )
        assert "KUBE-NODEPORTS" in rules
        assert _processes_mentioning("sleep 3600"), "the pod's process should run before down"
        assert _object_stores(cluster.network.link), "the object store should run before down"
        assert str(state) in Path("/proc/self/mountinfo").read_text()  # the node's namespace holders
    finally:
        plane.down()

    link, netns = cluster.network.link, cluster.network.netns
    assert _processes_mentioning(str(state)) == []
    assert _processes_mentioning("sleep 3600") == []
    assert _object_stores(link) == []
    assert str(state) not in Path("/proc/self/mountinfo").read_text()
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", link], capture_output=True).returncode != 0
    host_rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "default/sleeper" not in host_rules and cluster.network.pod_cidr not in host_rules
    assert [p for p in Path("/sys/fs/cgroup").glob(f"*/optimodel-{link}")] == []
    assert _sysctls() == sysctls_before
