"""The protocol-neutral data plane: model state, decode, validate, infer, encode. Serve layer.

May import `errors`, `model` (for `TensorSpec`/`Signature` only), `pool`, numpy and the stdlib;
never aiohttp: the v1 and v2 transports translate their wire formats to the calls here, so both
protocols validate the same way and give the same answers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimodel.serve.errors import InvalidInput, ModelNotFound, ModelNotReady, PayloadTooLarge
from optimodel.serve.model import Signature, TensorSpec
from optimodel.serve.pool import Arrays, Batcher

VERSION = "1"  # one artifact per server; the operator rolls out a new Deployment for a new one
MAX_REQUEST_ROWS = 1024  # default rows per request: the interpreter's tensors grow with the batch

# Told of every answered inference (inputs in the signature's order, outputs, seconds spent in
# `infer`): a shadow mirror.
Observer = Callable[[Arrays, Arrays, float], None]


@dataclass
class ModelState:
    """LOADING until the loader attaches a model or fails; DRAINING from SIGTERM on."""

    phase: str = "LOADING"  # LOADING | READY | FAILED | DRAINING
    message: str = ""


def decode_json(body: bytes) -> dict[str, Any]:
    """The request object; malformed JSON or a non-object is the client's error."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"malformed JSON body: {error}") from None
    except RecursionError:  # a body of 100 000 `[`: the parser's stack, not our bug, and not a 500
        raise InvalidInput("malformed JSON body: nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {type(value).__name__}")
    return value


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


_ALLOWED_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}


def to_array(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """JSON lists to an array of the input's dtype; strings, booleans for numbers, ragged rows refused."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise InvalidInput(f"{where}: ragged nested lists: every row must have the same length") from None
    except (OverflowError, TypeError, RecursionError):  # e.g. [1.0, 10**400]: no float holds it
        raise InvalidInput(f"{where}: values out of range or nested too deeply") from None
    allowed = _ALLOWED_KINDS.get(spec.dtype.kind, spec.dtype.kind)
    if array.size and array.dtype.kind not in allowed:
        raise InvalidInput(
            f"{where}: expected numbers for input {spec.name!r} ({spec.dtype.name}), got {_kind_name(array)}"
        )
    return array.astype(spec.dtype)


def _kind_name(array: np.ndarray) -> str:
    return {"U": "strings", "b": "booleans", "O": "mixed or null values", "f": "floats"}.get(
        array.dtype.kind, array.dtype.name
    )


def check_shape(array: np.ndarray, spec: TensorSpec, where: str) -> None:
    """Rank and every fixed dimension but the batch (axis 0, resized per call) must match."""
    expected = [str(d) if d >= 0 else "-1" for d in spec.shape]
    if array.ndim != len(spec.shape) or any(
        want >= 0 and got != want for want, got in list(zip(spec.shape, array.shape, strict=True))[1:]
    ):
        raise InvalidInput(
            f"{where}: input {spec.name!r} has shape {list(array.shape)}, expected [{', '.join(expected)}] "
            "(-1 is the batch)"
        )
    if array.shape[0] == 0:
        raise InvalidInput(f"{where}: input {spec.name!r} has an empty batch")


class DataPlane:
    """What both transports call: which model is served, is it ready, and inference on arrays."""

    def __init__(self, name: str, max_rows: int = MAX_REQUEST_ROWS) -> None:
        """`max_rows`: rows one request may carry; a larger batch is refused (413), never resized to."""
        self.name = name
        self.max_rows = max_rows
        self.state = ModelState()
        self._signature: Signature | None = None
        self._batcher: Batcher | None = None
        self.observer: Observer | None = None  # must not block: it runs before the client's answer is sent

    def attach(self, signature: Signature, batcher: Batcher) -> None:
        self._signature, self._batcher = signature, batcher
        self.state = ModelState("READY")

    def waiting(self, message: str) -> None:
        """Still loading, and why it takes longer (readiness and v1 status show the message)."""
        if self.state.phase == "LOADING":
            self.state = ModelState("LOADING", message)

    def fail(self, message: str) -> None:
        self.state = ModelState("FAILED", message)

    def drain(self) -> None:
        """Unready for probes; requests that still arrive on open connections are answered."""
        self.state = ModelState("DRAINING", "shutting down")

    @property
    def ready(self) -> bool:
        return self.state.phase == "READY"

    def check_values(self, body: bytes) -> None:
        """Refuse (413) a body with more values than `max_rows` rows can hold, before decoding it.

        Decoding JSON costs up to 30 bytes of memory per byte of body (a list and a float object per
        `[0.5]`), so a maximum-size body of small numbers could OOM a pod on its own. Counting its
        separators is a C-speed scan: a valid request has at most about two per value (values, then
        rows of values), plus a few in its other fields. Models with dynamic inner dimensions have no
        such bound and skip the check.
        """
        per_row = 0
        for spec in self.signature.inputs:
            if any(d < 0 for d in spec.shape[1:]):
                return
            per_row += math.prod(spec.shape[1:])
        limit = 2 * self.max_rows * per_row + 4096
        if body.count(b",") > limit:
            raise PayloadTooLarge(
                f"the body holds more values than {self.max_rows} rows of this model can: split the batch "
                f"(at most {self.max_rows} rows per request)"
            )

    def check_model(self, name: str, version: str | None = None) -> None:
        if name != self.name:
            raise ModelNotFound(f"model {name!r} not found: this server serves {self.name!r}")
        if version is not None and version != VERSION:
            raise ModelNotFound(
                f"version {version!r} of model {name!r} not found: only version {VERSION} is served"
            )

    @property
    def signature(self) -> Signature:
        """Metadata needs the loaded model; 503 until then (503 keeps probes and clients retrying)."""
        if self._signature is None:
            raise ModelNotReady(
                f"model {self.name!r} is not ready: {self.state.phase.lower()} {self.state.message}".strip()
            )
        return self._signature

    def input_spec(self, name: str, where: str) -> TensorSpec:
        for spec in self.signature.inputs:
            if spec.name == name:
                return spec
        known = ", ".join(repr(s.name) for s in self.signature.inputs)
        raise InvalidInput(f"{where}: unknown input {name!r}; the model's inputs are {known}")

    async def infer(self, arrays: Arrays) -> Arrays:
        """Validate names, shapes and the common batch size, then run all rows as one call."""
        if self._batcher is None:
            raise ModelNotReady(f"model {self.name!r} is not ready ({self.state.phase.lower()})")
        signature = self.signature
        missing = [s.name for s in signature.inputs if s.name not in arrays]
        if missing:
            raise InvalidInput(f"missing input(s) {', '.join(map(repr, missing))}")
        extra = [name for name in arrays if name not in {s.name for s in signature.inputs}]
        if extra:
            raise InvalidInput(f"unknown input(s) {', '.join(map(repr, extra))}")
        for spec in signature.inputs:
            check_shape(arrays[spec.name], spec, "inputs")
        batches = {arrays[s.name].shape[0] for s in signature.inputs}
        if len(batches) > 1:
            raise InvalidInput(f"inputs disagree on the batch size: {sorted(batches)}")
        rows = batches.pop()
        if rows > self.max_rows:
            raise PayloadTooLarge(
                f"{rows} rows exceed the limit of {self.max_rows} per request: split the batch"
            )
        started = time.perf_counter()
        outputs = await self._batcher.run(arrays, rows)
        if self.observer is not None:
            ordered = {spec.name: arrays[spec.name] for spec in signature.inputs}  # the signature's order
            self.observer(ordered, outputs, time.perf_counter() - started)
        return outputs
