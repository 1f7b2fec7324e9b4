"""Helpers of the serving tests (a uniquely named module so it never collides with another conftest)."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import numpy as np
from ai_edge_litert.interpreter import Interpreter

REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")
NAME = "digits"

BUILD_MODELS = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tf_keras as keras

out = sys.argv[1]
keras.utils.set_random_seed(0)
inputs = keras.Input((8, 8, 1))
x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
x = keras.layers.Flatten()(x)
x = keras.layers.Dense(32, activation="relu")(x)
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))

converter = tf.lite.TFLiteConverter.from_keras_model(model)
open(os.path.join(out, "float32.tflite"), "wb").write(converter.convert())

rng = np.random.default_rng(0)
def representative():
    for _ in range(32):
        yield [rng.random((1, 8, 8, 1), dtype=np.float32)]
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
open(os.path.join(out, "int8.tflite"), "wb").write(converter.convert())

# slow: convolutions with many channels (about 1 ms per row, small weights), so a batch of a few
# hundred rows keeps a request in flight for a while
inputs = keras.Input((8, 8, 1), name="input_1")
x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inputs)
for _ in range(3):
    x = keras.layers.Conv2D(256, 3, padding="same", activation="relu")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
slow = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
open(os.path.join(out, "slow.tflite"), "wb").write(tf.lite.TFLiteConverter.from_keras_model(slow).convert())
"""


@dataclass(frozen=True)
class Models:
    float32: Path
    int8: Path
    slow: Path  # float32, about 1 ms per row: keeps a large batch in flight


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def litert_predict(path: Path, batch: np.ndarray) -> np.ndarray:
    """The oracle: LiteRT called directly, with its own quantization, independent of the server's code."""
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(batch.shape))
    interpreter.allocate_tensors()
    scale, zero = detail["quantization"]
    if detail["dtype"] == np.int8:
        batch = np.clip(np.round(batch / scale) + zero, -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], batch.astype(detail["dtype"]))
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    result = interpreter.get_tensor(out["index"])
    if out["dtype"] == np.int8:
        o_scale, o_zero = out["quantization"]
        return (result.astype(np.float32) - o_zero) * o_scale
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command() -> list[str]:
    """`python -m optimodel serve` once the main CLI exists; the serve package's own entry until then."""
    if (REPO / "operator" / "optimodel" / "cli.py").exists():
        return [sys.executable, "-m", "optimodel", "serve"]
    return [sys.executable, "-m", "optimodel.serve"]


@dataclass
class Server:
    url: str
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until(check: Callable[[], bool], timeout: float, what: str, server: Server) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited ({server.process.returncode}) before {what}:\n{server.output()}"
            )
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{server.output()}")


StartServer = Callable[..., Server]
Oracle = Callable[[Path, np.ndarray], np.ndarray]


def batch(rows: int, seed: int = 0) -> np.ndarray:
    """Random digits-like inputs in [0, 1)."""
    return np.random.default_rng(seed).random((rows, 8, 8, 1), dtype=np.float32)



def in_flight(url: str) -> float:
    """`optimodel_requests_in_flight` of the process that answers this /metrics request (itself included)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("optimodel_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no optimodel_requests_in_flight in /metrics")


def wait_in_flight(url: str, timeout: float = 10) -> None:
    """Until a /metrics scrape shows another request in flight besides itself (with several workers,
    until a scrape lands on the worker that has it)."""
    deadline = time.monotonic() + timeout
    while in_flight(url) < 2:
        assert time.monotonic() < deadline, "the slow request never arrived"
        time.sleep(0.02)


class Background(Generic[T]):
    """A call running in a thread: `running()` says whether it has returned yet, calling joins it."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._result: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(call,))
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._result["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            self._result["error"] = error

    def running(self) -> bool:
        """Still waiting for its answer: the evidence that a request is in flight at this moment."""
        return self._thread.is_alive()

    def __call__(self) -> T:
        self._thread.join(timeout=60)
        if "error" in self._result:
            raise self._result["error"]
        value: T = self._result["value"]
        return value


def in_background(call: Callable[[], T]) -> Background[T]:
    """Run `call` in a thread now; the returned object joins it and gives its result (or raises)."""
    return Background(call)
