"""Benchmark of `optimodel serve` against KServe's Python model server on the same int8 .tflite.

Throughput and p50/p99 latency of v2 `infer` calls (one instance each) at concurrency 1, 8 and 32,
on both reference models in turn: digits-wide (8x8x1 input, inference about 0.25 ms: HTTP dominates)
and mobilenet-v2 (64x64x3 input, the convolutional network users serve: a 12,288-value request).

Both servers run two processes with one LiteRT interpreter of one thread each: optimodel
with `--workers 2 --interpreters 1 --threads 1` (dynamic batching on: `--batch-wait-ms 2
--max-batch-size 32`), KServe with `--workers 2` (it has no dynamic batching).

The load comes from vegeta (Go, closed loop: N connections, each sending its next request when the
last one answered), built by hack/build-vegeta.sh: a Python client would take a core of a 2-core
machine for itself. Both servers stay up for the whole run and take turns, level by level, for
`--rounds` rounds (the order flips every round); the tables give the median of the rounds, and the
lowest per-round throughput ratio, because this machine's speed drifts by tens of percent from one
minute to the next.

Each model is `bench/models/<name>-int8.tflite` when present, else one of the same architecture
(conv + 2x Dense(2048) on 8x8x1; Keras' MobileNetV2 at width 0.35 on 64x64x3), full int8, built with
TensorFlow into bench/out/ (untrained weights: serving speed does not depend on them).
The peer is installed by this script into bench/.venv-kserve from bench/serve_peer/requirements.txt.

Run: `python bench/serve_bench.py [--seconds 8] [--rounds 3] [--models digits-wide mobilenet-v2]
[--json bench/results/serve.json]` with the project's dev environment (TensorFlow is needed only to build the models).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.record

from bench.record import recording  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEER_VENV = BENCH / ".venv-kserve"
PEER_REQUIREMENTS = BENCH / "serve_peer" / "requirements.txt"
INPUT_SHAPES = {"digits-wide": (8, 8, 1), "mobilenet-v2": (64, 64, 3)}
CONCURRENCIES = (1, 8, 32)
WORKERS = 2  # server processes of optimodel (and of KServe): one per core
OPTIMODEL_FLAGS = ["--workers", str(WORKERS), "--interpreters", "1", "--threads", "1", "--batch-wait-ms", "2",
                   "--max-batch-size", "32"]
KSERVE_FLAGS = ["--threads", "1", "--workers", str(WORKERS)]

_BUILD = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tf_keras as keras
keras.utils.set_random_seed(0)
if sys.argv[2] == "mobilenet-v2":
    shape = (64, 64, 3)
    model = keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=10)
else:
    shape = (8, 8, 1)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(2048, activation="relu")(x)
    x = keras.layers.Dense(2048, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
rng = np.random.default_rng(0)
def representative():
    for _ in range(64):
        yield [rng.random((1, *shape), dtype=np.float32)]
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
open(sys.argv[1], "wb").write(converter.convert())
"""


def model_path(name: str) -> Path:
    """bench/models/<name>-int8.tflite, else one of the same architecture built once into bench/out/."""
    shipped = BENCH / "models" / f"{name}-int8.tflite"
    if shipped.exists():
        return shipped
    built = BENCH / "out" / f"{name}-int8.tflite"
    if not built.exists():
        built.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {built} (full int8) ...", flush=True)
        subprocess.run([sys.executable, "-c", _BUILD, str(built), name], check=True, stderr=subprocess.DEVNULL)
    return built


def peer_python() -> Path | None:
    """KServe in its own venv, installed (or refreshed) from the pinned requirements; None if impossible."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / "requirements.sha256"
    wanted = hashlib.sha256(PEER_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing the KServe peer into {PEER_VENV} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(PEER_REQUIREMENTS)], check=True)
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"cannot install the KServe peer ({error}): benchmarking optimodel alone", flush=True)
        return None
    stamp.write_text(wanted)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def start_optimodel(model: Path, name: str, port: int, *flags: str) -> subprocess.Popen[bytes]:
    """`optimodel serve` with the benchmark's flags (OPTIMODEL_FLAGS), and `flags` after them."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optimodel",
            "serve",
            "--model",
            model.as_uri(),
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *OPTIMODEL_FLAGS,
            *flags,
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_kserve(python: Path, model: Path, name: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(python),
            str(BENCH / "serve_peer" / "kserve_tflite.py"),
            "--model_name",
            name,
            "--model_path",
            str(model),
            "--http_port",
            str(port),
            *KSERVE_FLAGS,
            "--enable_latency_logging",
            "false",
            "--enable_grpc",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def vegeta() -> Path:
    """The load generator, built once from the Go module proxy (hack/build-vegeta.sh) and cached."""
    binary = REPO / ".dev" / "bin" / "vegeta"
    if not binary.exists():
        subprocess.run(["bash", str(REPO / "hack" / "build-vegeta.sh")], check=True)
    return binary


def attack(url: str, body: Path, concurrency: int, seconds: float) -> dict[str, float]:
    """Closed loop: `concurrency` connections, each sending its next request when the last one answered."""
    target = f"POST {url}\nContent-Type: application/json\n@{body}\n"
    attacked = subprocess.run(
        [
            str(vegeta()),
            "attack",
            "-rate=0",
            f"-workers={concurrency}",
            f"-max-workers={concurrency}",
            f"-duration={seconds}s",
            "-timeout=10s",
        ],
        input=target.encode(),
        capture_output=True,
        check=True,
    )
    reported = subprocess.run(
        [str(vegeta()), "report", "-type=json"], input=attacked.stdout, capture_output=True, check=True
    )
    report = json.loads(reported.stdout)
    latencies = report["latencies"]
    return {
        "rps": float(report["throughput"]),
        "p50_ms": latencies["50th"] / 1e6,
        "p99_ms": latencies["99th"] / 1e6,
        "errors": sum(n for code, n in report["status_codes"].items() if code != "200"),
    }


def request_body(directory: Path, shape: tuple[int, ...]) -> Path:
    """One v2 request with one instance, as a file vegeta sends as the body."""
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    tensor = {"name": "input_1", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    body = directory / "infer.json"
    body.write_text(json.dumps({"inputs": [tensor]}))
    return body


Results = dict[str, dict[int, list[dict[str, float]]]]


def measure(servers: dict[str, int], name: str, body: Path, rounds: int, seconds: float,
            concurrencies: tuple[int, ...] = CONCURRENCIES) -> Results:
    """Every level `rounds` times, the servers taking turns (first in one round, last in the next),
    so that a slow minute of a shared machine weighs on all of them alike."""
    results: Results = {label: {c: [] for c in concurrencies} for label in servers}
    for round_ in range(rounds):
        order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
        for concurrency in concurrencies:
            for label in order:
                url = f"http://127.0.0.1:{servers[label]}/v2/models/{name}/infer"
                attack(url, body, concurrency, 1.0)  # warm-up: connections, caches, batch sizes
                result = attack(url, body, concurrency, seconds)
                results[label][concurrency].append(result)
                print(f"  round {round_ + 1} {label:<10} c={concurrency:<3} {result}", flush=True)
    return results


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def table(results: Results) -> str:
    lines = [
        "| server | concurrency | req/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, by_concurrency in results.items():
        for concurrency, runs in by_concurrency.items():
            lines.append(
                f"| {label} | {concurrency} | {_median(runs, 'rps'):.0f} | {_median(runs, 'p50_ms'):.2f} "
                f"| {_median(runs, 'p99_ms'):.2f} | {int(sum(run['errors'] for run in runs))} |"
            )
    if len(results) == 2:
        ours, peer = results["optimodel"], results["kserve"]
        lines.append("")
        lines.append("| concurrency | throughput ratio (optimodel / kserve) | lowest of the rounds | p99 ratio |")
        lines.append("| ---: | ---: | ---: | ---: |")
        for c in CONCURRENCIES:
            per_round = [a["rps"] / b["rps"] for a, b in zip(ours[c], peer[c], strict=True)]
            lines.append(
                f"| {c} | {_median(ours[c], 'rps') / _median(peer[c], 'rps'):.2f}x | {min(per_round):.2f}x "
                f"| {_median(ours[c], 'p99_ms') / _median(peer[c], 'p99_ms'):.2f} |"
            )
    return "\n".join(lines)


def bench_model(name: str, model: Path, python: Path | None, rounds: int, seconds: float) -> Results:
    """Both servers up on one model for the whole measurement, then stopped."""
    print(f"{name}: {model} ({model.stat().st_size:,} bytes); {os.cpu_count()} CPUs", flush=True)
    processes = {"optimodel": start_optimodel(model, name, port := free_port())}
    ports = {"optimodel": port}
    if python is not None:
        processes["kserve"] = start_kserve(python, model, name, port := free_port())
        ports["kserve"] = port
    try:
        for label, process in processes.items():
            wait_ready(f"http://127.0.0.1:{ports[label]}/v2/models/{name}/ready", process)
        with tempfile.TemporaryDirectory() as directory:
            return measure(ports, name, request_body(Path(directory), INPUT_SHAPES[name]), rounds, seconds)
    finally:
        for process in processes.values():
            stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per level and round")
    parser.add_argument("--rounds", type=int, default=3, help="times each level is measured per server")
    parser.add_argument("--models", nargs="+", default=list(INPUT_SHAPES), choices=list(INPUT_SHAPES))
    parser.add_argument("--json", type=Path, help="write the figures here for bench/results.py")
    args = parser.parse_args()
    python = peer_python()
    settings = {"seconds": args.seconds, "rounds": args.rounds, "concurrencies": list(CONCURRENCIES),
                "optimodel": OPTIMODEL_FLAGS, "kserve": KSERVE_FLAGS,
                "peer": [line for line in PEER_REQUIREMENTS.read_text().splitlines()
                         if line.startswith(("kserve==", "ai-edge-litert=="))]}
    with recording(args.json, "serve", settings) as figures:
        figures["models"] = []
        for name in args.models:
            model = model_path(name)
            result = bench_model(name, model, python, args.rounds, args.seconds)
            figures["models"].append({"model": name, "bytes": model.stat().st_size,
                                      "servers": {label: {str(c): runs for c, runs in levels.items()}
                                                  for label, levels in result.items()}})
            print(f"\n{name}\n")
            print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
