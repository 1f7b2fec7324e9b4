"""The aiohttp application: wiring, error middleware, metrics, background load, drain. Serve layer, app.

May import aiohttp and every `optimodel.serve` module; it is the only place that knows them all.

Lifecycle: the server listens at once (liveness answers while the model downloads), the loader runs
in a thread, and readiness turns true only when the model is verified, loaded and warmed up. On
SIGTERM or SIGINT readiness turns false, the listening socket closes, requests in flight finish
(up to `drain_seconds`), and `serve` returns 0.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from optimodel.serve import loader, v1, v2
from optimodel.serve.dataplane import DataPlane, encode_json
from optimodel.serve.errors import LoadError, ServeError, from_http_status, http_status
from optimodel.serve.metrics import CONTENT_TYPE, Metrics
from optimodel.serve.pool import Batcher, InterpreterPool

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_RETRY_FIRST_S, _RETRY_MAX_S = 1.0, 30.0


@dataclass(frozen=True)
class ServerSettings:
    name: str
    host: str
    port: int
    max_body_bytes: int
    max_batch_size: int
    batch_wait_ms: float
    drain_seconds: float
    load: loader.LoadSettings


def _error_response(error: ServeError) -> web.Response:
    return web.Response(
        body=encode_json({"error": str(error)}), status=http_status(error), content_type="application/json"
    )


def _middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def handle(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error becomes `{"error": ...}` with its status; every answer is counted and timed."""
        protocol = request.path.split("/", 2)[1] if request.path.count("/") > 1 else "other"
        protocol = protocol if protocol in ("v1", "v2") else "other"
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        metrics.in_flight.inc()
        try:
            response = await handler(request)
        except ServeError as error:
            response = _error_response(error)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = _error_response(
                from_http_status(error.status, f"{request.method} {request.path}: {error.text}")
            )
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            response = _error_response(ServeError("internal error; see the server log"))
        finally:
            metrics.in_flight.dec()
        metrics.latency.labels(protocol, route).observe(time.perf_counter() - started)
        metrics.requests.labels(protocol, route, str(response.status)).inc()
        if response.status >= 400:
            metrics.errors.labels(protocol, str(response.status)).inc()
        return response

    return handle


def build_app(settings: ServerSettings, plane: DataPlane, metrics: Metrics) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_middleware(metrics)])

    async def render_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.add_routes([web.get("/metrics", render_metrics), *v1.routes(plane), *v2.routes(plane)])
    return app


class _Model:
    """The loaded pool and batcher, kept to close them on shutdown."""

    def __init__(self) -> None:
        self.pool: InterpreterPool | None = None
        self.batcher: Batcher | None = None

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self.pool is not None:
            self.pool.close()


async def _load(settings: ServerSettings, plane: DataPlane, metrics: Metrics, holder: _Model) -> None:
    """Load in a thread; retry outages with backoff; on a permanent failure stay live and unready."""
    delay = _RETRY_FIRST_S
    while True:
        try:
            models = await asyncio.to_thread(loader.load, settings.load)
            break
        except LoadError as error:
            if error.permanent:
                log.error("model %r will not be served: %s", plane.name, error)
                plane.fail(str(error))
                return
            log.warning("cannot load model %r yet, retrying in %.0f s: %s", plane.name, delay, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
    holder.pool = InterpreterPool(models, metrics)
    holder.batcher = Batcher(holder.pool, settings.max_batch_size, settings.batch_wait_ms / 1000)
    if plane.state.phase == "LOADING":
        plane.attach(models[0].signature, holder.batcher)
        metrics.ready.set(1)
        log.info("model %r ready on %s:%d", plane.name, settings.host, settings.port)


async def serve(settings: ServerSettings) -> int:
    """Run until SIGTERM/SIGINT, then drain; 0 when the drain finished."""
    metrics, plane, holder = Metrics(), DataPlane(settings.name), _Model()
    directory = Path(tempfile.mkdtemp(prefix="optimodel-serve-", dir=settings.load.directory))
    settings = replace(settings, load=replace(settings.load, directory=directory))
    runner = web.AppRunner(
        build_app(settings, plane, metrics),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.drain_seconds,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port, backlog=1024).start()
        log.info("listening on %s:%d, loading %s", settings.host, settings.port, settings.load.uri)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loading = asyncio.create_task(_load(settings, plane, metrics, holder))
        await stop.wait()
        log.info("signal received: draining requests in flight (up to %.0f s)", settings.drain_seconds)
        plane.drain()
        metrics.ready.set(0)
        loading.cancel()
        await runner.cleanup()
        await holder.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    log.info("drained; exiting")
    return 0
