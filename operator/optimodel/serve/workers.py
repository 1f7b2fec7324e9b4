"""`--workers N`: N server processes sharing one port, and the parent that supervises them. Serve layer.

May import `app`, multiprocessing, signal, logging and the stdlib. One Python process serves HTTP
on one core at most (the event loop holds the interpreter lock while it parses, validates and
encodes), so on a machine with several cores N processes answer more requests. Each worker is a
whole server (`app.serve`): its own event loop, interpreter pool, batcher and `/metrics`, listening
on the same address with SO_REUSEPORT, so the kernel spreads connections across them.

Readiness is common: a worker that has loaded its model waits until every worker has, and only then
reports ready; so a probe never finds the pod ready while a connection could still land on a worker
that is loading. The parent holds no model and serves nothing. SIGTERM or SIGINT to the parent is
forwarded as SIGTERM to every worker, each drains as a single server does (unready at once, serving
through the drain delay with `Connection: close`, then closing its listener), and the parent exits
with the workers' worst exit code. A worker that exits on its own (a crash) stops the others and
the parent exits non-zero, so the container restarts rather than serve with fewer workers.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from types import FrameType

from optimodel.serve.app import ServerSettings, run

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
_POLL_S = 0.05


def _worker(settings: ServerSettings, index: int, loaded: Synchronized[int], level: str) -> int:
    """A worker process: a whole server that becomes ready once all its siblings have loaded too."""
    logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger().setLevel(level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # while starting: the parent forwards Ctrl-C as SIGTERM

    async def wait_for_siblings() -> None:
        with loaded.get_lock():
            loaded.value += 1
        while loaded.value < settings.workers:
            await asyncio.sleep(_POLL_S)

    return run(settings, before_ready=wait_for_siblings, reuse_port=True, worker=index)


def _run_worker(settings: ServerSettings, index: int, loaded: Synchronized[int], level: str) -> None:
    raise SystemExit(_worker(settings, index, loaded, level))


def _stop(processes: list[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive() and process.pid is not None:
            process.terminate()  # SIGTERM: the worker drains


def _join(processes: list[BaseProcess], timeout: float) -> None:
    """Wait for every worker; kill the ones still running after `timeout` (a drain that hung)."""
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            log.error("%s did not drain in time; killing it", process.name)
            process.kill()
            process.join()


def supervise(settings: ServerSettings, level: str) -> int:
    """Start `settings.workers` workers, forward SIGTERM/SIGINT to them, exit when they have all ended."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads or a loop
    loaded: Synchronized[int] = context.Value("i", 0)
    processes: list[BaseProcess] = [
        context.Process(target=_run_worker, args=(settings, index, loaded, level), name=f"worker-{index}")
        for index in range(settings.workers)
    ]
    stopping = False

    def on_signal(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("signal %d received: stopping %d workers", signum, len(processes))
        stopping = True
        _stop(processes)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        if stopping:  # a signal came while some were not started yet
            _stop(processes)
        log.info("started %d workers on %s:%d", len(processes), settings.host, settings.port)
        running = list(processes)
        while running:
            wait([p.sentinel for p in running])
            ended = [p for p in running if not p.is_alive()]
            running = [p for p in running if p.is_alive()]
            if not stopping and ended:
                first = ended[0]
                log.error("%s exited with %s: stopping the other workers", first.name, first.exitcode)
                stopping = True
                _stop(running)
                _join(running, settings.shutdown_seconds + 5)
                return _exit_code(first) or 1
        _join(processes, settings.shutdown_seconds + 5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return max(_exit_code(p) for p in processes)


def _exit_code(process: BaseProcess) -> int:
    """A worker killed by a signal (negative exit code) counts as a failure."""
    code = process.exitcode
    return code if code is not None and code >= 0 else 1
