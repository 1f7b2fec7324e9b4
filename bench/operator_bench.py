"""Benchmark of the operator on the local control plane (issue 4).

1. Reaction delays, for N resources that each run a real Job (a different tiny Keras model each),
   applied one after another so that they do not compete for the 2 cores: Job seen Complete ->
   serving Deployment seen created, and Deployment seen available -> OptimizedModel seen Ready=True.
   Every timestamp comes from watches this script runs (bench/operator_watch.py), on one clock.
2. A fleet: `--resources` OptimizedModels with the recipe of resource 1 (so its stored result is a
   CacheHit: no Job), created at once in one namespace, until every one is Ready. Each serving pod
   is a real `optimodel serve` process; the first `--serving` of them serve with 1 replica, the rest
   with `replicas: 0` (Ready with reason ScaledToZero: the operator still parses, reads S3, applies
   Deployment and Service and writes status for each). The RSS of one serve process is printed so
   the choice can be checked. The operator's peak RSS is its VmHWM.

Run: `.venv/bin/python bench/operator_bench.py [--resources 100] [--serving 20] [--jobs 5]` (as root;
needs `make k8s-bins`). Starts and stops its own cluster, moto server and operator.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, bench.operator_watch

from bench.operator_watch import Key, Recorder  # noqa: E402
from optimodel.devcluster.fixture import DevCluster, start_throwaway, stop  # noqa: E402
from optimodel.spec import API_GROUP, API_VERSION, PLURAL  # noqa: E402
from tests.support.s3server import S3Server, free_port, start_s3_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "optimodel.io_optimizedmodels.yaml"
MODELS = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, tf_keras as keras
    from sklearn.datasets import load_digits
    out, count = sys.argv[1], int(sys.argv[2])
    d = load_digits(); x = (d.images / 16.0).astype("float32")[..., None]; y = d.target.astype("int64")
    np.savez(f"{out}/test.npz", x=x[1400:], y=y[1400:]); np.savez(f"{out}/calibration.npz", x=x[:100])
    for version in range(1, count + 1):
        keras.utils.set_random_seed(version)
        m = keras.Sequential([keras.layers.Flatten(input_shape=(8, 8, 1)),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x[:1400], y[:1400], epochs=8, verbose=0)
        m.save(f"{out}/model-v{version}.h5")
""")


def manifest(name: str, endpoint: str, version: int, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "OptimizedModel",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": f"s3://models/digits/{version}/model.h5"},
            "optimization": {
                "method": "quantize",
                "quantization": {
                    "type": "int8",
                    "calibrationData": "s3://datasets/digits/calibration.npz",
                    "calibrationSamples": 50,
                },
            },
            "evaluation": {"data": "s3://datasets/digits/test.npz", "latency": {"runs": 20, "warmupRuns": 2}},
            "gates": {"maxSizeRatio": 0.6, "minMetric": 0.5},
            "artifacts": {
                "uri": "s3://artifacts/digits/",
                "s3": {"endpoint": endpoint, "credentialsSecret": "s3-credentials"},
            },
            "serving": {"replicas": replicas},
            "job": {"activeDeadlineSeconds": 300, "backoffLimit": 1},
        },
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: with 5 samples p95 is the largest, no interpolation flattering it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def proc_status(pid: int, field: str) -> int:
    """A kB figure of /proc/PID/status, in bytes (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def serve_pids() -> list[int]:
    """Processes running `optimodel serve` (the serving pods' containers, seen from the host)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and any(arg.endswith(b"optimodel") for arg in argv) and b"--model" in argv:
            pids.append(int(entry.name))
    return pids


def wait_until(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@contextmanager
def running_operator(cluster: DevCluster, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "OPTIMODEL_RETRY_SECONDS": "5",
        "OPTIMODEL_JOB_IMAGE": cluster.images["job"],
        "OPTIMODEL_SERVE_IMAGE": cluster.images["serve"],
        "OPTIMODEL_IMAGE_PULL_POLICY": "Never",
    }
    argv = [sys.executable, "-m", "optimodel", "operator", "--kubeconfig", str(cluster.kubeconfig), "-A"]
    argv += ["--metrics-port", "0", "--health-port", str(free_port())]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_namespace(cluster: DevCluster, namespace: str, s3: S3Server) -> None:
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        f"ServiceAccount in {namespace}",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
        20,
    )
    cluster.kubectl(
        "create", "secret", "generic", "s3-credentials", "-n", namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key}", f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_key}",
    )  # fmt: skip


def create(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, body)


def reaction_delays(
    cluster: DevCluster, s3: S3Server, recorder: Recorder, jobs: int
) -> tuple[list[float], list[float]]:
    """Part 1: one resource at a time, each running its own Job."""
    custom = client.CustomObjectsApi(recorder.api)
    make_namespace(cluster, "bench-jobs", s3)
    to_deployment, to_ready = [], []
    for version in range(1, jobs + 1):
        key: Key = ("bench-jobs", f"digits-{version}")
        create(custom, key[0], manifest(key[1], s3.endpoint, version, replicas=1))
        wait_until(f"{key[1]} Ready", lambda key=key: recorder.get(key).ready is not None, 300)
        seen = recorder.get(key)
        assert seen.job_complete and seen.deployment_created and seen.deployment_available and seen.ready
        to_deployment.append(seen.deployment_created - seen.job_complete)
        to_ready.append(seen.ready - seen.deployment_available)
        print(f"  {key[1]}: job->deployment {to_deployment[-1]:.3f} s, available->ready {to_ready[-1]:.3f} s")
    return to_deployment, to_ready


def fleet(
    cluster: DevCluster, s3: S3Server, recorder: Recorder, count: int, serving: int
) -> tuple[float, float, int]:
    """Part 2: `count` CacheHits at once; seconds to all Optimized, to all Ready, and Jobs created."""
    custom = client.CustomObjectsApi(recorder.api)
    make_namespace(cluster, "bench-fleet", s3)
    keys = [("bench-fleet", f"fleet-{i:03d}") for i in range(count)]
    started = time.monotonic()
    for index, (namespace, name) in enumerate(keys):
        create(custom, namespace, manifest(name, s3.endpoint, 1, replicas=1 if index < serving else 0))
    wait_until("every fleet resource Ready", lambda: all(recorder.get(k).ready for k in keys), 900)
    optimized = max(recorder.get(k).optimized or 0.0 for k in keys) - started
    ready = max(recorder.get(k).ready or 0.0 for k in keys) - started
    job_count = len(client.BatchV1Api(recorder.api).list_namespaced_job("bench-fleet").items)
    return optimized, ready, job_count


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'figure':<{width}} | {'measured':>24} | target |")
    print(f"| {'-' * width} | {'-' * 24} | --- |")
    for name, value, target in rows:
        print(f"| {name:<{width}} | {value:>24} | {target} |")


def main() -> None:
    """Run both parts and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5, help="resources that each run a Job (part 1)")
    parser.add_argument("--resources", type=int, default=100, help="CacheHit resources applied at once (part 2)")
    parser.add_argument("--serving", type=int, default=20, help="of those, how many serve with 1 replica")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="optimodel-opbench-"))
    print(f"training {args.jobs} tiny models in {work} ...")
    subprocess.run([sys.executable, "-c", MODELS, str(work), str(args.jobs)], check=True, timeout=600)
    cluster = start_throwaway()
    s3: S3Server | None = None
    recorder: Recorder | None = None
    try:
        s3 = start_s3_server(cluster.host_ip, work / "moto.log")
        for version in range(1, args.jobs + 1):
            s3.upload(work / f"model-v{version}.h5", f"s3://models/digits/{version}/model.h5")
        for name in ("test", "calibration"):
            s3.upload(work / f"{name}.npz", f"s3://datasets/digits/{name}.npz")
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", "crd/optimizedmodels.optimodel.io", "--timeout=60s")
        recorder = Recorder(cluster.api_client())
        recorder.start()
        with running_operator(cluster, work / "operator.log") as operator:
            print(f"part 1: {args.jobs} resources, one Job each, one after another")
            to_deployment, to_ready = reaction_delays(cluster, s3, recorder, args.jobs)
            serve_rss = [proc_status(pid, "VmRSS") for pid in serve_pids()]
            hwm_part1 = proc_status(operator.pid, "VmHWM")
            print(f"part 2: {args.resources} CacheHit resources at once ({args.serving} with a serving pod)")
            optimized, ready, fleet_jobs = fleet(cluster, s3, recorder, args.resources, args.serving)
            time.sleep(5)  # let the last watch events and status writes settle before reading memory
            hwm, rss = proc_status(operator.pid, "VmHWM"), proc_status(operator.pid, "VmRSS")
            alive = operator.poll() is None
    finally:
        if recorder is not None:
            recorder.stop()
        if s3 is not None:
            s3.stop()
        stop(cluster, remove_state=True)
    shutil.rmtree(work, ignore_errors=True)  # kept when something failed: operator.log and moto.log
    mib = 1024 * 1024
    n = len(to_deployment)
    one_serve = f"{max(serve_rss) / mib:.0f} MiB (max of {len(serve_rss)})" if serve_rss else "not found"
    rows = [
        (f"Job complete -> Deployment created, p50 (n={n})", f"{percentile(to_deployment, 0.5):.3f} s", "-"),
        (f"Job complete -> Deployment created, p95 (n={n})", f"{percentile(to_deployment, 0.95):.3f} s", "<= 1 s"),
        (f"Deployment available -> Ready, p50 (n={n})", f"{percentile(to_ready, 0.5):.3f} s", "-"),
        (f"Deployment available -> Ready, p95 (n={n})", f"{percentile(to_ready, 0.95):.3f} s", "<= 1 s"),
        ("RSS of one `optimodel serve` pod process", one_serve, "-"),
        (f"{args.resources} CacheHits created -> all Optimized", f"{optimized:.1f} s", "-"),
        (f"{args.resources} CacheHits created -> all Ready ({args.serving} serving)", f"{ready:.1f} s", "-"),
        ("Jobs created for the CacheHits", str(fleet_jobs), "0"),
        ("operator peak RSS after part 1 (VmHWM)", f"{hwm_part1 / mib:.0f} MiB", "-"),
        ("operator peak RSS after part 2 (VmHWM)", f"{hwm / mib:.0f} MiB", "<= 200 MB"),
        ("operator RSS at the end (VmRSS)", f"{rss / mib:.0f} MiB", "-"),
        ("operator still running", str(alive), "True"),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
