"""Benchmark of the local cluster on its real node: warm start (every image already in the node's
image store), pod creation to a running container, and a new Service answering on its NodePort,
measured now; beside them the cold build times of the binaries, which this script does not measure
but reads as hack/build-*.sh recorded them at build time (and labels them so).

Run: `.venv/bin/python bench/devcluster_bench.py [--pods N] [--json bench/results/devcluster.json]`
(as root; needs `make k8s-bins images`).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client, watch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.record

from bench.record import recording  # noqa: E402
from optimodel.devcluster.controlplane import default_bin_dir, default_images_dir  # noqa: E402
from optimodel.devcluster.fixture import DevCluster, start_throwaway, stop  # noqa: E402

CACHE = Path(
    os.environ.get("OPTIMODEL_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optimodel")
)


def cold_build_seconds() -> dict[str, float]:
    """The `build-seconds` files hack/build-*.sh leave next to each cached build, by build (recorded
    when that build ran, on whatever else the machine was doing then)."""
    return {p.parent.name: float(p.read_text()) for p in sorted(CACHE.glob("*/build-seconds"))}


def pod(name: str, image: str, command: list[str], **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command, **extra}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
    }


def pod_start_seconds(core: client.CoreV1Api, namespace: str, index: int, image: str) -> float:
    """Seconds from the create call to the pod reported Running by the kubelet."""
    name = f"bench-{index}"
    body = pod(name, image, ["sleep", "3600"])
    started = time.monotonic()
    core.create_namespaced_pod(namespace, body)
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}", timeout_seconds=30
    ):
        if event["object"].status.phase == "Running":
            w.stop()
            return time.monotonic() - started
    raise RuntimeError(f"pod {name} did not start within 30 s")


def service_answer_seconds(cluster: DevCluster, core: client.CoreV1Api, namespace: str) -> float:
    """Seconds from creating a NodePort Service in front of a ready pod to its first answer on the
    node's address (kube-proxy's rules written, the endpoints known)."""
    server = pod("web", cluster.images["serve"], ["python", "-m", "http.server", "8080", "-d", "/"])
    server["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    core.create_namespaced_pod(namespace, server)
    while not any(
        c.type == "Ready" and c.status == "True"
        for c in core.read_namespaced_pod("web", namespace).status.conditions or []
    ):
        time.sleep(0.05)
    node_ip = next(a.address for a in core.list_node().items[0].status.addresses if a.type == "InternalIP")
    body = {
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    started = time.monotonic()
    port = core.create_namespaced_service(namespace, body).spec.ports[0].node_port
    while time.monotonic() - started < 30:
        try:
            urllib.request.urlopen(f"http://{node_ip}:{port}/", timeout=1).close()
            return time.monotonic() - started
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("the Service did not answer within 30 s")


def image_bytes(cluster: DevCluster) -> dict[str, int]:
    """Size of each project image as `make images` saved it (an uncompressed docker-archive)."""
    archives = default_images_dir()
    return {role: (archives / (re.sub(r"[:/]", "_", ref) + ".tar")).stat().st_size
            for role, ref in cluster.images.items()}


def main() -> None:
    """Measure, print the table and (with --json) write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here for bench/results.py")
    args = parser.parse_args()
    with recording(args.json, "devcluster", {"pods": args.pods}) as figures:
        started = time.monotonic()
        cluster = start_throwaway()
        warm = time.monotonic() - started
        try:
            api = cluster.api_client()
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "bench"}})
            while not core.list_namespaced_service_account("bench").items:
                time.sleep(0.1)
            times = [pod_start_seconds(core, "bench", i, cluster.images["serve"]) for i in range(args.pods)]
            service = service_answer_seconds(cluster, core, "bench")
        finally:
            stop(cluster, remove_state=True)
        # The cold build is not run here (it takes many minutes and would rebuild the cache): its
        # figure is the one hack/build-*.sh wrote when they built, and the page says so.
        figures.update({"coldBuildSeconds": cold_build_seconds(), "warmStartSeconds": warm,
                        "podStartSeconds": times, "serviceAnswerSeconds": service,
                        "imageBytes": image_bytes(cluster)})
    print(f"cold builds (recorded at build time): {figures['coldBuildSeconds']}")
    print(f"warm cluster start (control plane, node, CoreDNS): {warm:.1f} s (target <= 30 s)")
    print(f"pod create -> Running: median {statistics.median(times):.2f} s, max {max(times):.2f} s (target <= 1 s)")
    print(f"NodePort Service create -> first answer: {service:.2f} s")
    print(f"images: {figures['imageBytes']}; binaries: {default_bin_dir()}")


if __name__ == "__main__":
    main()
