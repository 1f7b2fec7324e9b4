"""Interpreters shared by concurrent requests, and dynamic batching across them. Serve layer, pool.

May import `model`, `metrics`, numpy, asyncio and the stdlib; nothing of HTTP. The interpreter is
not thread-safe, so each `LiteModel` serves one call at a time: a call takes a free model from an
asyncio queue, runs it in a thread of an executor sized to the pool (LiteRT releases the GIL while
it computes), and gives it back. Two kinds of call run on the event loop's thread instead, when
expected (from the time per row of earlier calls) to be short:
- a call of a pool of one interpreter, expected to take at most `ONE_INTERPRETER_BUDGET_S`: no
  other call could run beside it, and on a busy process handing the call to a thread and back (the
  result waits for the interpreter lock the event loop holds) costs more than the parsing it lets
  overlap (measured on 2 cores, 2 workers: +20% req/s at 8 and 32 concurrent clients); the budget
  bounds how long health probes and `/metrics` may wait behind it;
- a call for the only request in flight, expected to take at most `INLINE_BUDGET_S`: nothing else
  is waiting for the loop.

With dynamic batching on (`batch_wait_ms > 0`), the batcher first takes a free interpreter, then
every request queued meanwhile, and waits for more only until `batch_wait_ms` after the first one
arrived, and only while no other interpreter is free and another call is running (its answers
bring the next requests); the rows (at most `max_batch_size`) run as one call and the outputs are
split back. So an idle server adds no latency, and a busy one makes fewer, larger calls. A request
of `max_batch_size` rows or more runs alone, straight on the pool, and so does the only request in
flight when nothing is queued and an interpreter is free; it looks once more after letting the
requests that arrived with it reach the batcher (`sleep(0)`): requests read in one pass of the
event loop start their handlers one after the other, and the first would otherwise run alone while
the others wait behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from optimodel.serve.metrics import Metrics
from optimodel.serve.model import LiteModel

Arrays = dict[str, np.ndarray]

INLINE_BUDGET_S = 0.001  # the longest a call for the only request in flight may hold the event loop
ONE_INTERPRETER_BUDGET_S = 0.02  # the longest a call of a one-interpreter pool may hold it


class InterpreterPool:
    """`size` models, each used by one call at a time."""

    def __init__(
        self, models: Sequence[LiteModel], metrics: Metrics, alone: Callable[[], bool] = lambda: False
    ) -> None:
        """`alone()` tells whether the request being served is the only one in flight."""
        self._models = list(models)
        self._executor = ThreadPoolExecutor(max_workers=len(self._models), thread_name_prefix="litert")
        self._free: asyncio.Queue[LiteModel] | None = None
        self._metrics = metrics
        self._alone = alone
        self._row_s = math.inf  # seconds per row of the last call; unknown until one ran

    def _queue(self) -> asyncio.Queue[LiteModel]:
        """Created lazily so the pool can be built outside the event loop (by the loader thread)."""
        if self._free is None:
            self._free = asyncio.LifoQueue()  # the last one used is the warmest in cache
            for model in self._models:
                self._free.put_nowait(model)
        return self._free

    async def acquire(self) -> LiteModel:
        """A free model, waiting for one; give it back with `release`."""
        return await self._queue().get()

    def alone(self) -> bool:
        """The request being served is the only one in flight."""
        return self._alone()

    def has_free(self) -> bool:
        return not self._queue().empty()

    def release(self, model: LiteModel) -> None:
        self._queue().put_nowait(model)

    def _predict(self, model: LiteModel, arrays: Arrays, rows: int) -> Arrays:
        started = time.perf_counter()
        outputs = model.predict(arrays)
        self._row_s = (time.perf_counter() - started) / rows
        return outputs

    async def call(self, model: LiteModel, arrays: Arrays) -> Arrays:
        """One call of an acquired model with every row of `arrays`, in the executor (or inline, see above)."""
        rows = next(iter(arrays.values())).shape[0]
        self._metrics.batch_rows.observe(rows)
        expected_s = rows * self._row_s
        if expected_s <= INLINE_BUDGET_S and self._alone() or (
            len(self._models) == 1 and expected_s <= ONE_INTERPRETER_BUDGET_S
        ):
            return self._predict(model, arrays, rows)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, model, arrays, rows)

    async def run(self, arrays: Arrays) -> Arrays:
        model = await self.acquire()
        try:
            return await self.call(model, arrays)
        finally:
            self.release(model)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@dataclass
class _Pending:
    arrays: Arrays
    rows: int
    future: asyncio.Future[Arrays] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _resolve(future: asyncio.Future[Arrays], outputs: Arrays) -> None:
    """A waiter whose client went away has a cancelled future: nobody to answer."""
    if not future.done():
        future.set_result(outputs)


class Batcher:
    """Joins concurrent requests into calls of at most `max_batch_size` rows, waiting at most `wait_s`."""

    def __init__(self, pool: InterpreterPool, max_batch_size: int, wait_s: float) -> None:
        self._pool = pool
        self._max = max_batch_size
        self._wait = wait_s
        self._pending: asyncio.Queue[_Pending] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._running = 0  # interpreter calls in progress
        self._collecting = False  # the collector holds a first request (and maybe an interpreter)

    def _idle(self) -> bool:
        """One request in flight, nothing queued or being collected, an interpreter free: batching
        could only add latency."""
        return (
            not self._collecting
            and (self._pending is None or self._pending.empty())
            and self._pool.has_free()
            and self._pool.alone()
        )

    async def run(self, arrays: Arrays, rows: int) -> Arrays:
        if self._wait <= 0 or rows >= self._max:
            return await self._pool.run(arrays)
        if self._idle():
            await asyncio.sleep(0)  # the handlers of requests read with this one start now
            if self._idle():
                return await self._pool.run(arrays)
        if self._pending is None:
            self._pending = asyncio.Queue()
            self._collector = asyncio.create_task(self._collect(self._pending))
        item = _Pending(arrays, rows)
        self._pending.put_nowait(item)
        return await item.future

    async def _collect(self, pending: asyncio.Queue[_Pending]) -> None:
        """Take an interpreter first, then everything queued meanwhile: batches grow only under load."""
        loop = asyncio.get_running_loop()
        carry: _Pending | None = None
        while True:
            first = carry or await pending.get()
            self._collecting = True
            deadline = loop.time() + self._wait
            model = await self._pool.acquire()
            batch, rows, carry = [first], first.rows, None
            while rows < self._max:
                remaining = deadline - loop.time()
                if pending.empty() and (remaining <= 0 or self._pool.has_free() or not self._running):
                    break  # nothing queued, and waiting is over or pointless (spare capacity, or idle)
                try:
                    item = (
                        pending.get_nowait()
                        if not pending.empty()
                        else await asyncio.wait_for(pending.get(), remaining)
                    )
                except TimeoutError:
                    break
                if rows + item.rows > self._max:
                    carry = item
                    break
                batch.append(item)
                rows += item.rows
            self._collecting = False
            call = asyncio.create_task(self._call(model, batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _call(self, model: LiteModel, batch: list[_Pending]) -> None:
        self._running += 1
        try:
            names = batch[0].arrays.keys()
            joined = (
                batch[0].arrays
                if len(batch) == 1
                else {name: np.concatenate([item.arrays[name] for item in batch]) for name in names}
            )
            outputs = await self._pool.call(model, joined)
        except Exception as error:  # noqa: BLE001 - every waiter must hear of the failure
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            self._running -= 1
            self._pool.release(model)
        start = 0
        for item in batch:
            _resolve(item.future, {name: value[start : start + item.rows] for name, value in outputs.items()})
            start += item.rows

    async def close(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)
