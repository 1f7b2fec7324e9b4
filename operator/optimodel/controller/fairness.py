"""Reconciles run on the operator's threads, each namespace waiting its turn for its share. Controller layer.

The operator is shared by tenants: one whose S3 endpoint never answers must not hold every thread,
and one with a thousand resources must not make everyone else's wait. A namespace runs at most
`namespace_workers` reconciles at once; the rest of its reconciles wait in the event loop, holding no
thread and writing nothing, and start as soon as one of their namespace's slots frees. Other
namespaces take the remaining threads meanwhile.

An earlier version refused the surplus at once and asked kopf to retry it later: every refusal cost a
progress-annotation patch and a fixed delay, so a thousand resources created in one namespace took
most of an hour to settle. Waiting costs nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class NamespaceQueue:
    def __init__(self, workers: int, namespace_workers: int) -> None:
        self.namespace_workers = namespace_workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def run(self, namespace: str, work: Callable[[], T]) -> T:
        """Run `work` on a thread once `namespace` has a free slot.

        The slot is given back when the thread finishes, not when the caller stops waiting: kopf may
        cancel a handler (the resource went away, the operator stops) while its call still runs.
        """
        slots = self._slots.setdefault(namespace, asyncio.Semaphore(self.namespace_workers))
        await slots.acquire()
        # The handler's context goes along, as asyncio.to_thread takes it: kopf.event reads kopf's
        # settings from a context variable.
        context = contextvars.copy_context()
        try:
            running = asyncio.get_running_loop().run_in_executor(self._executor, context.run, work)
        except BaseException:
            slots.release()
            raise
        running.add_done_callback(lambda _: slots.release())
        return await asyncio.shield(running)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
