"""What the operator's cluster tests share: the operator as a subprocess, tiny models, manifests, kubectl.

Not a test module: the e2e story, the retry, deletion and credentials tests import it. Each keeps
its own fixtures (module-scoped S3 servers and operators with the settings that test needs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from optimodel.devcluster.fixture import DevCluster
from tests.support.polling import wait_for
from tests.support.s3server import free_port

CRD = Path(__file__).resolve().parents[2] / "crds" / "optimodel.io_optimizedmodels.yaml"

# Two versions of a tiny digits model (a 64-unit dense net) and its data: each Job takes seconds.
TINY_MODELS = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, tf_keras as keras
    from sklearn.datasets import load_digits
    out = sys.argv[1]
    d = load_digits(); x = (d.images / 16.0).astype("float32")[..., None]; y = d.target.astype("int64")
    np.savez(f"{out}/test.npz", x=x[1400:], y=y[1400:]); np.savez(f"{out}/calibration.npz", x=x[:100])
    for version in (1, 2):
        keras.utils.set_random_seed(version)
        m = keras.Sequential([keras.layers.Flatten(input_shape=(8, 8, 1)),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x[:1400], y[:1400], epochs=10 + 5 * version, verbose=0)
        m.save(f"{out}/model-v{version}.h5")
""")

PORT_ATTEMPTS = 3
STARTUP_SECONDS = 60  # until it serves /metrics and /healthz, or ends


@contextmanager
def moto_with_tiny_models(cluster: DevCluster, folder: Path) -> Iterator[str]:
    """moto (no authentication) on the host's address on the node's link, where pods reach it, empty
    but for both versions of the tiny model, their data and a broken model; yields its endpoint."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port(cluster.host_ip)
    server = ThreadedMotoServer(ip_address=cluster.host_ip, port=port)
    server.start()
    try:
        endpoint = f"http://{cluster.host_ip}:{port}"
        # moto keeps its buckets in this process, shared by every server it starts: begin empty, or a
        # module would find the results (and reuse them) that an earlier module's Jobs stored.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
        subprocess.run([sys.executable, "-c", TINY_MODELS, str(folder)], check=True, timeout=300)
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        for bucket in ("models", "datasets", "artifacts"):
            client.create_bucket(Bucket=bucket)
        for version in (1, 2):
            client.upload_file(str(folder / f"model-v{version}.h5"), "models", f"digits/{version}/model.h5")
        for name in ("test", "calibration"):
            client.upload_file(str(folder / f"{name}.npz"), "datasets", f"digits/{name}.npz")
        client.put_object(Bucket="models", Key="broken/model.h5", Body=b"not a model")
        yield endpoint
    finally:
        server.stop()


def reconciles_at(metrics_url: str, result: str | None = None) -> float:
    """`optimodel_reconciles_total` of an operator's /metrics, of every result or of one: the evidence
    that reconciles ran, where a sleep would only guess. 0 while the operator does not answer."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("optimodel_reconciles_total{") and (result is None or f'result="{result}"' in line)
    )


class Operator:
    """`optimodel operator` as a subprocess, restartable; `env` overrides its settings, `args` are
    appended to its command line (e.g. `--verbose`, or a `--metrics-port` other than none);
    `kubeconfig` is whom it acts as (default: the admin)."""

    def __init__(
        self,
        cluster: DevCluster,
        log: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        kubeconfig: Path | None = None,
    ) -> None:
        self.cluster, self.log, self.env, self.args = cluster, log, env or {}, args
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port, self.health_port = free_port(), free_port()

    def start(self) -> None:
        env = {
            **os.environ,
            "OPTIMODEL_RESYNC_SECONDS": "10",
            "OPTIMODEL_FULL_RESYNC_SECONDS": "10",  # every resync checks S3 too, as the tests expect
            "OPTIMODEL_RETRY_SECONDS": "5",
            # The images `make images` built and the node imported: Jobs and serving pods run in them.
            "OPTIMODEL_JOB_IMAGE": self.cluster.images["job"],
            "OPTIMODEL_SERVE_IMAGE": self.cluster.images["serve"],
            "OPTIMODEL_IMAGE_PULL_POLICY": "Never",
            # The tests' S3 servers listen on the host's address on the node's link, on ports of their own.
            "OPTIMODEL_ALLOWED_S3_ENDPOINTS": f"http://{self.cluster.host_ip}:*",
            **self.env,
        }
        for _ in range(PORT_ATTEMPTS):
            argv = [sys.executable, "-m", "optimodel", "operator", "--kubeconfig", str(self.kubeconfig), "-A"]
            argv += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port), *self.args]
            logged = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            if not self._lost_a_port(logged):
                return
            self.metrics_port, self.health_port = free_port(), free_port()
        raise AssertionError(f"the operator found its ports taken {PORT_ATTEMPTS} times; see {self.log}")

    def _lost_a_port(self, logged: int) -> bool:
        """The process ended because a port it was given was taken meanwhile: `free_port` picks a
        port that was free a moment before, and another process on the machine (any outgoing
        connection takes an ephemeral port) may take it first. Any other exit is left for the test.
        /metrics is bound first and kopf's /healthz last (after it logged in), so both answering
        means it holds both."""
        proc = self.proc
        assert proc is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while proc.poll() is None:
            if time.monotonic() > deadline or (self._metrics() is not None and self._health_answers()):
                return False  # holding both, or slow for another reason: the test will tell
            time.sleep(0.2)
        with self.log.open("rb") as log:
            log.seek(logged)
            return b"address already in use" in log.read().lower()

    def _health_answers(self) -> bool:
        """Anything answers HTTP on its health port (kopf says 500 until its probes ran once)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reconciles(self, result: str | None = None) -> float:
        """Reconciles this operator process ran (see `reconciles_at`); a restart starts again at 0."""
        return reconciles_at(f"http://127.0.0.1:{self.metrics_port}/metrics", result)

    def _metrics(self) -> str | None:
        """Its /metrics text, None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def leading(self) -> bool | None:
        """`optimodel_leader` of this process: True while it holds the Lease, False while it stands by,
        None while its /metrics does not answer."""
        text = self._metrics()
        if text is None:
            return None
        lines = [line for line in text.splitlines() if line.startswith("optimodel_leader ")]
        return float(lines[0].rsplit(" ", 1)[1]) == 1 if lines else None

    def wait_for_reconciles(self, more: int, result: str | None = None, timeout: float = 60) -> None:
        """Until `more` reconciles (of `result`, when given) have run since this call."""
        start = self.reconciles(result)
        wait_for(
            f"{more} more reconciles{f' ending {result}' if result else ''} (from {start:.0f})",
            lambda: self.reconciles(result) >= start + more,
            timeout=timeout,
        )


@contextmanager
def running_operator(
    cluster: DevCluster,
    log: Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    kubeconfig: Path | None = None,
) -> Iterator[Operator]:
    """The CRD installed and an operator running for the block; the tail of its log printed after."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    # `kubectl wait` errors out, rather than waiting, on a CRD so new that it has no conditions yet.
    wait_for(
        "the CRD Established",
        lambda: cluster.kubectl(
            "wait", "--for=condition=Established", "crd/optimizedmodels.optimodel.io", "--timeout=10s", check=False
        ).returncode == 0,
        timeout=60,
    )
    runner = Operator(cluster, log, env, args, kubeconfig)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
        print(runner.log.read_text()[-5000:])


def manifest(name: str, endpoint: str, source: str = "s3://models/digits/1/model.h5", **gates: Any) -> dict[str, Any]:
    """An int8 OptimizedModel of the tiny digits model in the e2e story's buckets."""
    return {
        "apiVersion": "optimodel.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": source},
            "optimization": {
                "method": "quantize",
                "quantization": {
                    "type": "int8",
                    "calibrationData": "s3://datasets/digits/calibration.npz",
                    "calibrationSamples": 50,
                },
            },
            "evaluation": {"data": "s3://datasets/digits/test.npz", "latency": {"runs": 20, "warmupRuns": 2}},
            "gates": gates or {"maxSizeRatio": 0.5, "minMetric": 0.85, "maxMetricDrop": 0.05},
            "artifacts": {
                "uri": "s3://artifacts/digits/",
                # moto refuses anonymous reads, as S3 does for a private bucket: the serving pods get
                # the same Secret as read credentials (moto here checks no keys).
                "s3": {
                    "endpoint": endpoint,
                    "credentialsSecret": "s3-credentials",
                    "servingCredentialsSecret": "s3-credentials",
                },
            },
            "serving": {"replicas": 1},
            "job": {"activeDeadlineSeconds": 300, "backoffLimit": 1},
        },
    }


def secret_yaml(namespace: str, key_id: str, secret_key: str) -> str:
    """The `s3-credentials` Secret the manifests name."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-credentials", "namespace": namespace},
            "stringData": {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret_key},
        }
    )


def setup_namespace(cluster: DevCluster, namespace: str) -> None:
    """Credentials for a moto server without authentication (any keys do)."""
    cluster.kubectl("apply", "-f", "-", input=secret_yaml(namespace, "test", "test"))


def apply(cluster: DevCluster, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))


def get(cluster: DevCluster, namespace: str, *what: str) -> Any:
    """The object(s) as JSON, or None when kubectl cannot get them."""
    proc = cluster.kubectl("get", *what, "-n", namespace, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((body or {}).get("status") or {}).get("conditions", []):
        if item["type"] == type_:
            return dict(item)
    return {}


def jobs(cluster: DevCluster, namespace: str) -> list[str]:
    return [j["metadata"]["name"] for j in get(cluster, namespace, "jobs")["items"]]
