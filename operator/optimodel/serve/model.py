"""One LiteRT interpreter: load a .tflite file, describe its tensors, predict. Serve layer, model.

The only module that imports `ai_edge_litert`. It may import numpy and the stdlib; it knows
nothing of HTTP or JSON. A `LiteModel` is not thread-safe (neither is the interpreter under it):
the pool gives each one to a single caller at a time.

Quantized (int8/uint8) inputs and outputs are hidden from callers: they pass and get float32, and
this module quantizes with the tensor's (scale, zero point), clipping to the integer range, and
dequantizes outputs. Callers therefore see the "wire" dtype (`TensorSpec.dtype`), never the
storage dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter


@dataclass(frozen=True)
class TensorSpec:
    """What a caller must send (inputs) or gets back (outputs) for one tensor."""

    name: str  # the signature's name (e.g. "input_1"), else the tensor's name
    tensor_name: str  # the name inside the flatbuffer (e.g. "serving_default_input_1:0")
    index: int
    dtype: np.dtype[Any]  # the dtype callers see: float32 for quantized tensors
    shape: tuple[int, ...]  # -1 for a dynamic dimension (the batch)
    storage_dtype: np.dtype[Any]
    scale: float = 0.0
    zero_point: int = 0
    quantized: bool = False  # int8/uint8 storage with a scale: callers pass and get float32


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _spec(name: str, detail: dict[str, Any]) -> TensorSpec:
    storage = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    quantized = scale != 0.0 and np.issubdtype(storage, np.integer)
    return TensorSpec(
        name=name,
        tensor_name=str(detail["name"]),
        index=int(detail["index"]),
        dtype=np.dtype(np.float32) if quantized else storage,
        shape=tuple(int(d) for d in detail.get("shape_signature", detail["shape"])),
        storage_dtype=storage,
        scale=float(scale),
        zero_point=int(zero_point),
        quantized=bool(quantized),
    )


def _signature(interpreter: Interpreter) -> Signature:
    """Names from the first signature (what Keras exports) so clients see `input_1`, not tensor ids."""
    signatures = interpreter.get_signature_list()
    if signatures:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        return Signature(
            inputs=tuple(_spec(n, d) for n, d in runner.get_input_details().items()),
            outputs=tuple(_spec(n, d) for n, d in runner.get_output_details().items()),
        )
    return Signature(
        inputs=tuple(_spec(str(d["name"]), d) for d in interpreter.get_input_details()),
        outputs=tuple(_spec(str(d["name"]), d) for d in interpreter.get_output_details()),
    )


def _quantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """In place on a fresh float32 copy: this runs per call, holding the GIL between numpy calls."""
    info = np.iinfo(spec.storage_dtype)
    scaled = np.divide(values, np.float32(spec.scale), dtype=np.float32)
    np.round(scaled, out=scaled)
    scaled += spec.zero_point
    np.clip(scaled, info.min, info.max, out=scaled)
    return scaled.astype(spec.storage_dtype)


def _dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    out = values.astype(np.float32)
    out -= spec.zero_point
    out *= np.float32(spec.scale)
    return out


class LiteModel:
    """One interpreter with its tensors resized on demand to the batch it is given."""

    def __init__(self, path: Path, threads: int) -> None:
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self.signature = _signature(self._interpreter)
        self._shapes = {s.index: tuple(int(d) for d in self._current_shape(s)) for s in self.signature.inputs}

    def _current_shape(self, spec: TensorSpec) -> tuple[int, ...]:
        for detail in self._interpreter.get_input_details():
            if detail["index"] == spec.index:
                return tuple(int(d) for d in detail["shape"])
        raise KeyError(spec.index)

    def _resize(self, arrays: dict[str, np.ndarray]) -> None:
        """Resize only when a shape changed: allocate_tensors is costly on large models."""
        changed = False
        for spec in self.signature.inputs:
            shape = tuple(arrays[spec.name].shape)
            if self._shapes[spec.index] != shape:
                self._interpreter.resize_tensor_input(spec.index, list(shape))
                self._shapes[spec.index] = shape
                changed = True
        if changed:
            self._interpreter.allocate_tensors()

    def predict(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one call on inputs already validated to the signature's names and shapes."""
        self._resize(arrays)
        for spec in self.signature.inputs:
            values = arrays[spec.name]
            stored = _quantize(values, spec) if spec.quantized else values.astype(spec.storage_dtype)
            self._interpreter.set_tensor(spec.index, stored)
        self._interpreter.invoke()
        outputs: dict[str, np.ndarray] = {}
        for spec in self.signature.outputs:
            raw = self._interpreter.get_tensor(spec.index)
            outputs[spec.name] = _dequantize(raw, spec) if spec.quantized else raw.copy()
        return outputs
