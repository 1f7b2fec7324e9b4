"""Benchmark of the local cluster: warm start of the control plane and pod creation to a running
container, measured now; beside them the cold build time of the binaries, which this script does not
measure but reads as hack/build-k8s.sh recorded it at build time (and labels it so).

Run: `.venv/bin/python bench/devcluster_bench.py [--pods N]` (as root; needs `make k8s-bins`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from kubernetes import client, watch

from optimodel.devcluster.controlplane import default_bin_dir
from optimodel.devcluster.fixture import start_throwaway, stop

CACHE = Path(
    os.environ.get("OPTIMODEL_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optimodel")
)


def cold_build_seconds() -> str:
    """Sum of the `build-seconds` files hack/build-k8s.sh leaves next to each cached build."""
    figures = [float(p.read_text()) for p in CACHE.glob("*/build-seconds")]
    return f"{sum(figures):.0f} s ({len(figures)} builds)" if figures else "not recorded"


def pod_start_seconds(core: client.CoreV1Api, namespace: str, index: int) -> float:
    """Seconds from the create call to the pod reported Running by the node agent."""
    name = f"bench-{index}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }
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


def main() -> None:
    """Print the figures as a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    cluster = start_throwaway()
    warm = time.monotonic() - started
    try:
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "bench"}})
        while not core.list_namespaced_service_account("bench").items:
            time.sleep(0.1)
        times = [pod_start_seconds(core, "bench", i) for i in range(args.pods)]
    finally:
        stop(cluster, remove_state=True)
    # The cold build is not run here (it takes many minutes and would rebuild the cache): its figure
    # is the one hack/build-k8s.sh wrote when it built, and the table says so rather than "measured".
    rows = [
        ("cold build (etcd, helm, kube-*)", cold_build_seconds(), "recorded at build time", "-"),
        ("warm control-plane start", f"{warm:.1f} s", "measured now", "<= 20 s"),
        (f"pod create -> Running (median of {len(times)})", f"{statistics.median(times):.2f} s", "measured now",
         "<= 1 s"),
        ("pod create -> Running (max)", f"{max(times):.2f} s", "measured now", "-"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>22}  {'source':<22}  target")
    for name, value, source, target in rows:
        print(f"{name:<{width}}  {value:>22}  {source:<22}  {target}")
    print(f"binaries: {default_bin_dir()}")


if __name__ == "__main__":
    main()
