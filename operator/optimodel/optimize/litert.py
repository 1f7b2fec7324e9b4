"""Judges a candidate in LiteRT, the runtime that will serve it. Optimizer layer.

Same batching and int8 edge handling as the server: a candidate's accuracy and latency are the
ones users will see.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from optimodel.errors import InputError
from optimodel.optimize.native_logs import filtered_stderr


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale


class LiteRTModel:
    """One interpreter (not thread-safe: used by one thread at a time)."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        self._model = model  # the interpreter reads from this buffer for its whole life
        try:
            self._interpreter = Interpreter(model_content=model, num_threads=threads)
        except (ValueError, RuntimeError) as error:
            raise InputError(f"LiteRT cannot load the converted model: {error}", field="spec.optimization") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = -1

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = list(self._input["shape"])
            shape[0] = batch
            self._interpreter.resize_tensor_input(self._input["index"], shape)
            with filtered_stderr():  # the first allocation in a process announces XNNPACK
                self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._output = self._interpreter.get_output_details()[0]
            self._batch = batch

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._resize(x.shape[0])
        self._interpreter.set_tensor(self._input["index"], _quantize(x, self._input))
        self._interpreter.invoke()
        return _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.concatenate(
            [self._invoke(x[start:start + batch_size]) for start in range(0, x.shape[0], batch_size)], axis=0)

    def latency_ms(self, x: np.ndarray, runs: int, warmup: int) -> tuple[float, float]:
        """p50 and p95 of single-sample inference, the latency one request sees."""
        self._resize(1)
        samples = [x[index % x.shape[0]:index % x.shape[0] + 1] for index in range(runs + warmup)]
        timings = []
        for index, sample in enumerate(samples):
            started = time.perf_counter()
            self._invoke(sample)
            if index >= warmup:
                timings.append((time.perf_counter() - started) * 1000)
        p50, p95 = np.percentile(timings, [50, 95])
        return float(p50), float(p95)
