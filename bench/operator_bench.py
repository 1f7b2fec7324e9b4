"""Benchmark of the operator on the local control plane (issue 4).

1. Reaction delays, for N resources that each run a real Job (a different tiny Keras model each),
   applied one after another so that they do not compete for the 2 cores: Job seen Complete ->
   serving Deployment seen created, and Deployment seen available -> OptimizedModel seen Ready=True.
   Every timestamp comes from watches this script runs (bench/operator_watch.py), on one clock.
2. A fleet that grows in steps (`--fleet 100 300 1000`), spread over `--namespaces` namespaces (10:
   the teams of a shared operator; one namespace runs at most OPTIMODEL_NAMESPACE_WORKERS reconciles
   at once): at each step the OptimizedModels that bring it to that size are created at once, all
   with the recipe of resource 1 (so its stored result is a CacheHit: no Job), until every one is
   Ready. Each serving pod is a real `optimodel serve` process; the first `--serving` of the fleet
   serve with 1 replica, the rest with `replicas: 0` (Ready with reason ScaledToZero: the operator
   still parses, reads S3, applies Deployment and Service and writes status for each; a 2-core node
   runs at most 110 pods). Then,
   with nothing changing, the operator's API requests per second over `--window` seconds, counted
   in the API server's audit log (the operator runs as the one user it audits). The RSS of one
   serve process is recorded so the choice can be checked; the operator's peak RSS is its VmHWM.
3. With the whole fleet settled, the same count over `--cycle` seconds (default: the full resync
   interval, 600 s), so that every resource's full reconcile (S3 included) falls in the window once:
   what the operator costs the API server on average, not only between full resyncs.

Run: `.venv/bin/python bench/operator_bench.py [--jobs 5] [--fleet 100 300 1000] [--namespaces 10]
[--serving 20] [--window 60] [--cycle 600] [--json bench/results/operator.json]` (as root; needs
`make k8s-bins images`). Starts and stops its own cluster, moto server and operator.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, bench.operator_watch

from bench.operator_watch import Key, Recorder  # noqa: E402
from bench.record import recording  # noqa: E402
from optimodel.devcluster.controlplane import AUDITED_USER  # noqa: E402
from optimodel.devcluster.fixture import DevCluster, start_throwaway, stop  # noqa: E402
from optimodel.spec import API_GROUP, API_VERSION, PLURAL  # noqa: E402
from tests.cluster.operator_kit import running_operator  # noqa: E402
from tests.support.s3server import S3Server, start_s3_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "optimodel.io_optimizedmodels.yaml"
FLEET = "bench-fleet"
# The operator as the tests run it (tests/cluster/operator_kit.py: the built images, the S3 endpoints
# of the host allowed), but with the default resyncs (60 s, a full one with S3 every 600 s), so the
# steady state is the one a user's cluster sees; retries sooner so part 1 does not wait on a transient.
OPERATOR_ENV = {
    "OPTIMODEL_RESYNC_SECONDS": "60",
    "OPTIMODEL_FULL_RESYNC_SECONDS": "600",
    "OPTIMODEL_RETRY_SECONDS": "5",
}
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
                "s3": {"endpoint": endpoint, "credentialsSecret": "s3-credentials",
                       "servingCredentialsSecret": "s3-credentials"},
            },
            # A small CPU request, so that the fleet's serving pods fit the 2-core node beside the
            # others (the default request is 100m): the benchmark measures the operator, not the pods.
            "serving": {"replicas": replicas, "resources": {"requests": {"cpu": "20m"}}},
            "job": {"activeDeadlineSeconds": 300, "backoffLimit": 1},
        },
    }


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


def audited_requests(cluster: DevCluster, since: float, until: float) -> tuple[int, int]:
    """Requests the operator (the audited user) made between two wall-clock times, and how many of
    them wrote (create, update, patch, delete), from the API server's own audit log."""
    path = cluster.state_dir / "logs" / "audit.log"
    total = writes = 0
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("stage") != "ResponseComplete" or entry["user"]["username"] != AUDITED_USER:
            continue
        received = datetime.datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if since <= received.timestamp() < until:
            total += 1
            writes += entry["verb"] in {"create", "update", "patch", "delete"}
    return total, writes


def fleet_namespace(index: int, namespaces: int) -> str:
    return f"{FLEET}-{index % namespaces}"


def fleet_step(
    cluster: DevCluster, s3: S3Server, recorder: Recorder, existing: int, total: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Part 2, one step: the fleet grows from `existing` to `total` CacheHits created at once; the
    seconds until the new ones are all Optimized and all Ready, the Jobs created, then the
    operator's API requests per second over `window` seconds once nothing changes."""
    custom = client.CustomObjectsApi(recorder.api)
    keys = [(fleet_namespace(i, args.namespaces), f"fleet-{i:04d}") for i in range(existing, total)]
    started = time.monotonic()
    for index, (namespace, name) in zip(range(existing, total), keys, strict=True):
        create(custom, namespace, manifest(name, s3.endpoint, 1, replicas=1 if index < args.serving else 0))
    wait_until(f"{total} fleet resources Ready", lambda: all(recorder.get(k).ready for k in keys), 900 + 2 * total)
    optimized = max(recorder.get(k).optimized or 0.0 for k in keys) - started
    ready = max(recorder.get(k).ready or 0.0 for k in keys) - started
    batch = client.BatchV1Api(recorder.api)
    jobs = sum(len(batch.list_namespaced_job(fleet_namespace(i, args.namespaces)).items)
               for i in range(args.namespaces))
    time.sleep(10)  # the last status writes and watch events of the step
    since = time.time()
    time.sleep(args.window)
    requests, writes = audited_requests(cluster, since, time.time())
    step = {"resources": total, "created": total - existing, "secondsToOptimized": optimized,
            "secondsToReady": ready, "jobs": jobs, "steadyRequestsPerSecond": requests / args.window,
            "steadyWrites": writes, "windowSeconds": args.window}
    print(f"  {step}", flush=True)
    return step


def main() -> None:
    """Run both parts, print the figures and (with --json) write them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5, help="resources that each run a Job (part 1)")
    parser.add_argument("--fleet", type=int, nargs="+", default=[100, 300, 1000],
                        help="fleet sizes the CacheHit resources grow to, step by step (part 2)")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces the fleet is spread over")
    parser.add_argument("--serving", type=int, default=20, help="of those, how many serve with 1 replica")
    parser.add_argument("--window", type=float, default=60, help="seconds of steady state measured per step")
    parser.add_argument("--cycle", type=float, default=float(OPERATOR_ENV["OPTIMODEL_FULL_RESYNC_SECONDS"]),
                        help="seconds of the last measurement, with the whole fleet settled (part 3; 0: skip)")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/results.py")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress lines through a pipe too
    settings = {"jobs": args.jobs, "fleet": args.fleet, "namespaces": args.namespaces, "serving": args.serving,
                "windowSeconds": args.window, "cycleSeconds": args.cycle, "operatorEnv": OPERATOR_ENV}
    with recording(args.json, "operator", settings) as figures:
        figures.update(run(args))
    print(json.dumps(figures, indent=1))


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="optimodel-opbench-"))
    print(f"training {args.jobs} tiny models in {work} ...")
    subprocess.run([sys.executable, "-c", MODELS, str(work), str(args.jobs)], check=True, timeout=600)
    cluster = start_throwaway()
    s3: S3Server | None = None
    recorder: Recorder | None = None
    figures: dict[str, Any] = {}
    try:
        s3 = start_s3_server(cluster.host_ip, work / "moto.log")
        for version in range(1, args.jobs + 1):
            s3.upload(work / f"model-v{version}.h5", f"s3://models/digits/{version}/model.h5")
        for name in ("test", "calibration"):
            s3.upload(work / f"{name}.npz", f"s3://datasets/digits/{name}.npz")
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))  # before the recorder watches the resources
        cluster.kubectl("wait", "--for=condition=Established", "crd/optimizedmodels.optimodel.io", "--timeout=60s")
        recorder = Recorder(cluster.api_client())
        recorder.start()
        # As the one user the API server audits, so that its requests can be counted.
        kubeconfig = cluster.user_kubeconfig(AUDITED_USER, ("system:masters",))
        with running_operator(cluster, work / "operator.log", OPERATOR_ENV, kubeconfig=kubeconfig) as runner:
            assert runner.proc is not None
            operator = runner.proc
            print(f"part 1: {args.jobs} resources, one Job each, one after another")
            to_deployment, to_ready = reaction_delays(cluster, s3, recorder, args.jobs)
            figures.update({"jobToDeploymentSeconds": to_deployment, "availableToReadySeconds": to_ready,
                            "serveProcessRssBytes": [proc_status(pid, "VmRSS") for pid in serve_pids()],
                            "operatorPeakRssBytesAfterJobs": proc_status(operator.pid, "VmHWM"), "fleet": []})
            for index in range(args.namespaces):
                make_namespace(cluster, fleet_namespace(index, args.namespaces), s3)
            existing = 0
            for total in args.fleet:
                print(f"part 2: the fleet grows to {total} CacheHits ({args.serving} with a serving pod)")
                step = fleet_step(cluster, s3, recorder, existing, total, args)
                step["operatorPeakRssBytes"] = proc_status(operator.pid, "VmHWM")
                figures["fleet"].append(step)
                existing = total
            if args.cycle > 0:
                print(f"part 3: the operator's requests over {args.cycle:g} s, the whole fleet settled")
                since = time.time()
                time.sleep(args.cycle)
                requests, writes = audited_requests(cluster, since, time.time())
                figures["cycle"] = {"resources": existing, "seconds": args.cycle,
                                    "requestsPerSecond": requests / args.cycle, "writes": writes,
                                    "operatorPeakRssBytes": proc_status(operator.pid, "VmHWM")}
                print(f"  {figures['cycle']}")
            figures["operatorRunning"] = operator.poll() is None
    finally:
        if recorder is not None:
            recorder.stop()
        if s3 is not None:
            s3.stop()
        stop(cluster, remove_state=True)
    shutil.rmtree(work, ignore_errors=True)  # kept when something failed: operator.log and moto.log
    return figures


if __name__ == "__main__":
    main()
