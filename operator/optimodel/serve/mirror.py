"""Shadow traffic: copy sampled live requests to a candidate server and compare its answers. Serve layer.

May import aiohttp (the client), numpy, `metrics`, `pool` (types) and the stdlib; never the
transports: the copy is taken at the data plane (arrays in, arrays out), so v1 and v2 clients are
mirrored alike, and sent to the candidate over the open inference protocol (v2).

Why this shape: a client's latency must never depend on the candidate. `offer` only samples and
puts the request on a bounded queue (dropped, and counted, when full); a few sender tasks do the
rest after the client has its answer. The candidate is a remote server and treated as hostile:
every call has a timeout, its answer is read up to a size limit and parsed defensively, and
whatever goes wrong counts as one of its errors, never as an error of the serving model.

The figures go to `/metrics`, labelled with the candidate's sha256 (from its `Optimodel-Model-Sha256`
header), so that the operator judges the candidate it started and not an earlier one: top-1 agreement
for classification (`classes`), mean absolute difference for regression (`values`), both models'
inference times on the same requests (each measured inside its own server, the network left out),
and the candidate's errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import numpy as np

from optimodel.serve.metrics import Metrics
from optimodel.serve.pool import Arrays

log = logging.getLogger(__name__)

MODEL_SHA256_HEADER = "Optimodel-Model-Sha256"
MAX_METADATA_BYTES = 1024 * 1024
INFERENCE_SECONDS_HEADER = "Optimodel-Inference-Seconds"
UNKNOWN = "unknown"  # errors before the candidate ever answered: no sha256 to label them with
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DATATYPES = {"float32": "FP32", "float16": "FP16", "int8": "INT8", "uint8": "UINT8", "int32": "INT32",
              "int64": "INT64", "bool": "BOOL", "float64": "FP64", "int16": "INT16"}

Compare = Literal["classes", "values"]


@dataclass(frozen=True)
class MirrorSettings:
    url: str  # the candidate's base URL, e.g. http://digits-candidate.ml.svc:8501
    percent: int = 100  # of inference requests copied
    compare: Compare = "classes"
    queue_size: int = 64  # requests waiting to be copied; more are dropped
    senders: int = 2  # copies in flight at once
    timeout_seconds: float = 5.0
    pause_seconds: float = 1.0  # after the candidate could not be reached: no copies meanwhile
    max_answer_bytes: int = 16 * 1024 * 1024


class CandidateError(Exception):
    """The candidate failed a mirrored request: error status, timeout, or an answer we cannot use."""


@dataclass(frozen=True)
class _Copy:
    arrays: Arrays
    outputs: Arrays
    serving_seconds: float


def encode_request(arrays: Arrays, names: list[str]) -> bytes:
    """The inputs as a v2 inference request to a candidate whose inputs are `names` (its order).

    Named as the candidate names them: by name when it has every one of ours, otherwise by position
    (two versions of a model often name their inputs differently: `flatten_input`, `flatten_1_input`).
    """
    if len(names) != len(arrays):
        raise CandidateError(f"the candidate has {len(names)} inputs, the serving model {len(arrays)}")
    renamed = list(arrays) if set(arrays) == set(names) else names
    inputs = [
        {"name": name, "shape": list(array.shape), "datatype": _DATATYPES.get(array.dtype.name, "FP32"),
         "data": array.ravel().tolist()}
        for name, array in zip(renamed, arrays.values(), strict=True)
    ]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def decode_answer(body: bytes, expected: Arrays) -> Arrays:
    """The candidate's outputs, each with the shape of the serving model's matching output.

    Outputs pair by name when the candidate names every one of the serving model's; otherwise by
    position (both servers answer in their signature's order): two versions of a model often
    name their output tensors differently (`dense_1`, `dense_3`) for the same meaning.
    """
    try:
        document = json.loads(body)
        items = list(document["outputs"])
        names = [item["name"] for item in items]
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise CandidateError(f"unreadable answer: {type(error).__name__}") from None
    if len(items) != len(expected):
        raise CandidateError(f"answer has {len(items)} outputs, the serving model {len(expected)}")
    by_name = set(expected) <= set(names)
    arrays: Arrays = {}
    for position, (name, want) in enumerate(expected.items()):
        item = items[names.index(name)] if by_name else items[position]
        try:
            array = np.asarray(item["data"], dtype=np.float64).reshape(want.shape)
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
            raise CandidateError(f"output {name!r} does not hold {want.size} numbers") from None
        arrays[name] = array
    return arrays


@dataclass(frozen=True)
class Comparison:
    """How one answer compares: rows (classes) or values (values) compared, and how many agree or
    the sum of absolute differences."""

    compared: int
    agreeing: int = 0
    absolute_difference: float = 0.0


def compare(serving: Arrays, candidate: Arrays, how: Compare) -> Comparison:
    """Top-1 agreement on the first output (classification) or absolute differences of every value."""
    if how == "classes":
        name = next(iter(serving))
        ours, theirs = serving[name], candidate[name]
        rows = ours.shape[0]
        agreeing = int(np.sum(ours.reshape(rows, -1).argmax(axis=1) == theirs.reshape(rows, -1).argmax(axis=1)))
        return Comparison(compared=rows, agreeing=agreeing)
    total, count = 0.0, 0
    for name, ours in serving.items():
        difference = np.abs(ours.astype(np.float64) - candidate[name])
        if not np.all(np.isfinite(difference)):
            raise CandidateError(f"output {name!r} holds values that are not finite")
        total += float(difference.sum())
        count += difference.size
    return Comparison(compared=count, absolute_difference=total)


def input_names(body: bytes) -> list[str]:
    """The input names of a v2 model metadata document."""
    try:
        names = [item["name"] for item in json.loads(body)["inputs"]]
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise CandidateError(f"unreadable metadata: {type(error).__name__}") from None
    if not names or not all(isinstance(name, str) for name in names):
        raise CandidateError("metadata names no inputs")
    return names


def _seconds(header: str | None) -> float | None:
    """The candidate's own inference time, when it says so sensibly."""
    try:
        value = float(header or "")
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value < 3600 else None


class Mirror:
    """The bounded queue, the sender tasks and the figures of one server process."""

    def __init__(self, settings: MirrorSettings, model: str, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.metadata_url = f"{settings.url.rstrip('/')}/v2/models/{model}"
        self.endpoint = f"{self.metadata_url}/infer"
        self.queue: asyncio.Queue[_Copy] = asyncio.Queue(settings.queue_size)
        self.candidate = UNKNOWN  # the sha256 the candidate last answered with
        self._inputs: tuple[str, list[str]] | None = None  # (candidate sha256, its input names)
        self._paused_until = 0.0  # monotonic time: no copies before it
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def offer(self, arrays: Arrays, outputs: Arrays, serving_seconds: float) -> None:
        """Sample and enqueue; never waits. Called on the event loop right after the serving answer."""
        if random.random() * 100 >= self.settings.percent or time.monotonic() < self._paused_until:
            return
        try:
            self.queue.put_nowait(_Copy(arrays, outputs, serving_seconds))
        except asyncio.QueueFull:
            self.metrics.shadow_dropped.inc()

    def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._tasks = [asyncio.create_task(self._send_forever()) for _ in range(self.settings.senders)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _send_forever(self) -> None:
        while True:
            copy = await self.queue.get()
            try:
                await self._send(copy)
            except CandidateError as error:
                self.metrics.shadow_errors.labels(self.candidate).inc()
                if time.monotonic() < self._paused_until:
                    # Unreachable: its analysis ended or it is gone. What fails from now on until a
                    # candidate answers again is no candidate's, or a reopened analysis of this one
                    # would count every failed attempt of the time it did not run.
                    self.candidate = UNKNOWN
                log.debug("mirrored request failed on the candidate: %s", error)

    def _heard(self, headers: Any) -> str:
        """The candidate's sha256 from its answer's headers (kept as the label of what follows)."""
        sha = str(headers.get(MODEL_SHA256_HEADER, "")).lower()
        if _SHA256.match(sha):
            self.candidate = sha
        return self.candidate

    def _unreachable(self) -> None:
        """Most often no candidate runs (a Service without endpoints): a connection attempt per request
        would cost the serving pod for nothing, so copies pause for a moment; the next candidate may
        have other inputs."""
        self._inputs = None
        self._paused_until = time.monotonic() + self.settings.pause_seconds

    async def _candidate_inputs(self) -> tuple[str, list[str]]:
        """The candidate's input names (its v2 metadata), asked once per candidate."""
        assert self._session is not None
        if self._inputs is None:
            try:
                async with self._session.get(self.metadata_url) as response:
                    sha = self._heard(response.headers)
                    if response.status != 200:
                        raise CandidateError(f"metadata: status {response.status}")
                    body = await response.content.read(MAX_METADATA_BYTES + 1)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                self._unreachable()
                raise CandidateError(f"metadata: {type(error).__name__}: {error}") from None
            self._inputs = (sha, input_names(body[:MAX_METADATA_BYTES]))
        return self._inputs

    async def _send(self, copy: _Copy) -> None:
        assert self._session is not None
        if time.monotonic() < self._paused_until:  # queued before the pause began
            self.metrics.shadow_dropped.inc()
            return
        asked, names = await self._candidate_inputs()
        try:
            async with self._session.post(
                self.endpoint, data=encode_request(copy.arrays, names), headers={"Content-Type": "application/json"}
            ) as response:
                if self._heard(response.headers) != asked:
                    self._inputs = None  # another candidate answers now: learn its inputs, count from the next
                    return
                if response.status != 200:
                    raise CandidateError(f"status {response.status}")
                body = await response.content.read(self.settings.max_answer_bytes + 1)
                seconds = _seconds(response.headers.get(INFERENCE_SECONDS_HEADER))
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            self._unreachable()  # gone (its analysis ended) or overloaded: ask its inputs again, later
            raise CandidateError(f"{type(error).__name__}: {error}") from None
        if len(body) > self.settings.max_answer_bytes:
            raise CandidateError(f"answer larger than {self.settings.max_answer_bytes} bytes")
        result = compare(copy.outputs, decode_answer(body, copy.outputs), self.settings.compare)
        label = self.candidate
        self.metrics.shadow_requests.labels(label).inc()
        self.metrics.shadow_compared.labels(label).inc(result.compared)
        if self.settings.compare == "classes":
            self.metrics.shadow_agreeing.labels(label).inc(result.agreeing)
        else:
            self.metrics.shadow_difference.labels(label).inc(result.absolute_difference)
        self.metrics.shadow_serving_seconds.labels(label).observe(copy.serving_seconds)
        if seconds is not None:
            self.metrics.shadow_candidate_seconds.labels(label).observe(seconds)
