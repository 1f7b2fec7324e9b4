"""The aiohttp application: wiring, error middleware, metrics, background load, drain. Serve layer, app.

May import aiohttp and every `optimodel.serve` module; it is the only place that knows them all.

Lifecycle: the server listens at once (liveness answers while the model downloads), the loader runs
in a thread, and readiness turns true only when the model is verified, loaded and warmed up. A model
that cannot be fetched yet (store unreachable, object missing) is retried with backoff, so the pod
becomes ready by itself once the object is there.

Shutdown keeps every client's request (a rollout or scale-in must cost clients nothing). On SIGTERM
or SIGINT: readiness turns 503 at once, but the server keeps accepting and answering for
`drain_delay_seconds`, the time load balancers and kube-proxy need to stop sending new connections
here; every answer from then on carries `Connection: close`, so keep-alive clients reconnect (to
another replica) after their current request instead of finding a closed socket. Then the listening
socket closes, idle connections close, requests in flight finish (up to `drain_seconds`), and
`serve` returns 0.

Admission: requests beyond `max_in_flight` inference calls are refused at once with 429 and
`Retry-After` (bounded memory and latency for the admitted ones); probes and `/metrics` are never
refused. Bodies come through `intake` (size limit, read timeout, large ones decoded off the loop).
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web
from aiohttp.typedefs import Middleware

from optimodel.backoff import Backoff
from optimodel.serve import loader, v1, v2
from optimodel.serve.dataplane import MAX_REQUEST_ROWS, DataPlane, encode_json
from optimodel.serve.errors import (
    LoadError,
    ServeError,
    TooManyRequests,
    from_http_status,
    http_headers,
    http_status,
)
from optimodel.serve.intake import Intake
from optimodel.serve.metrics import CONTENT_TYPE, Metrics
from optimodel.serve.mirror import MODEL_SHA256_HEADER, Mirror, MirrorSettings
from optimodel.serve.pool import Batcher, InterpreterPool

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLOSE_SECONDS = 2.0  # after the drain, for a request that arrived on a keep-alive connection meanwhile
LOAD_BACKOFF = Backoff(first_s=1.0, cap_s=30.0)  # a model that cannot be fetched yet is tried again


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
    workers: int = 1  # server processes sharing the port (see `workers`); `serve` is one of them
    drain_delay_seconds: float = 0.0  # after SIGTERM, unready but still accepting, before closing
    max_request_rows: int = MAX_REQUEST_ROWS
    max_in_flight: int = 64  # inference requests per process; more get 429
    read_timeout_seconds: float = 30.0  # for a request body to arrive
    keepalive_timeout_seconds: float = 30.0  # idle keep-alive connections close after this
    mirror: MirrorSettings | None = None  # copy sampled requests to a shadow candidate and compare

    @property
    def shutdown_seconds(self) -> float:
        """The longest a shutdown may take: the delay, the drain, the final close."""
        return self.drain_delay_seconds + self.drain_seconds + CLOSE_SECONDS


def _error_response(error: ServeError) -> web.Response:
    return web.Response(
        body=encode_json({"error": str(error)}),
        status=http_status(error),
        content_type="application/json",
        headers=http_headers(error),
    )


class InFlight:
    """Requests being handled by this process (the gauge's value, readable without private API)."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    def alone(self) -> bool:
        return self.count <= 1

    def enter(self) -> None:
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Until no request is in flight (True) or `timeout` seconds passed (False)."""
        if self.count == 0:
            return True
        self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


# A probe answering 503 while the model loads reports a state, not an error: not counted as one.
PROBE_ROUTES = ("/health/live", "/health/ready", "/ready")


def _middleware(
    metrics: Metrics, in_flight: InFlight, plane: DataPlane, max_in_flight: int, sha256: str | None
) -> Middleware:
    # prometheus' `labels()` takes a lock and builds a key per call: keep the children per label set
    latency: dict[tuple[str, str], Any] = {}
    answered: dict[tuple[str, str, int], Any] = {}
    errors: dict[tuple[str, int], Any] = {}

    def count(protocol: str, route: str, status: int, seconds: float) -> None:
        if (protocol, route) not in latency:
            latency[protocol, route] = metrics.latency.labels(protocol, route)
        latency[protocol, route].observe(seconds)
        if (protocol, route, status) not in answered:
            answered[protocol, route, status] = metrics.requests.labels(protocol, route, str(status))
        answered[protocol, route, status].inc()
        if status >= 400 and not route.endswith(PROBE_ROUTES):
            if (protocol, status) not in errors:
                errors[protocol, status] = metrics.errors.labels(protocol, str(status))
            errors[protocol, status].inc()

    @web.middleware
    async def handle(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error becomes `{"error": ...}` with its status; every answer is counted and timed."""
        protocol = request.path[1:3]
        protocol = protocol if protocol in ("v1", "v2") and request.path[3:4] == "/" else "other"
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        metrics.in_flight.inc()
        in_flight.enter()
        try:
            if request.method == "POST" and in_flight.count > max_in_flight:
                raise TooManyRequests(
                    f"{max_in_flight} requests in flight already: retry shortly", retry_after_seconds=1
                )
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
            in_flight.leave()
        count(protocol, route, response.status, time.perf_counter() - started)
        if sha256:  # which model answered: a shadow mirror labels its figures with it
            response.headers[MODEL_SHA256_HEADER] = sha256
        if plane.state.phase == "DRAINING":
            response.force_close()  # `Connection: close`: the client's next request opens a new connection
        return response

    return handle


def build_app(
    settings: ServerSettings, plane: DataPlane, metrics: Metrics, in_flight: InFlight, intake: Intake
) -> web.Application:
    middleware = _middleware(metrics, in_flight, plane, settings.max_in_flight, settings.load.sha256)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[middleware])

    async def render_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.add_routes([web.get("/metrics", render_metrics), *v1.routes(plane, intake), *v2.routes(plane, intake)])
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


async def _load(
    settings: ServerSettings,
    plane: DataPlane,
    metrics: Metrics,
    holder: _Model,
    in_flight: InFlight,
    before_ready: Callable[[], Awaitable[None]] | None,
) -> None:
    """Load in a thread; retry what may clear (an outage, a missing object) with backoff and jitter,
    saying why in readiness meanwhile; on a permanent failure stay live and unready."""
    failures = 0
    while True:
        try:
            models = await asyncio.to_thread(loader.load, settings.load)
            break
        except LoadError as error:
            if error.permanent:
                log.error("model %r will not be served: %s", plane.name, error)
                plane.fail(str(error))
                return
            failures += 1
            delay = LOAD_BACKOFF.delay(failures, random.random())
            log.warning("cannot load model %r yet, retrying in %.1f s: %s", plane.name, delay, error)
            plane.waiting(f"(attempt {failures} failed, retrying in {delay:.1f} s: {error})")
            await asyncio.sleep(delay)
    holder.pool = InterpreterPool(models, metrics, in_flight.alone)
    holder.batcher = Batcher(holder.pool, settings.max_batch_size, settings.batch_wait_ms / 1000)
    if before_ready is not None:
        await before_ready()
    if plane.state.phase == "LOADING":
        plane.attach(models[0].signature, holder.batcher)
        metrics.ready.set(1)
        log.info("model %r ready on %s:%d", plane.name, settings.host, settings.port)


async def _drain(runner: web.AppRunner, in_flight: InFlight, seconds: float) -> None:
    """Stop accepting, let the requests in flight finish, then close every connection.

    aiohttp's own graceful shutdown stops reading from every connection at once, so a request whose
    body is still arriving would hang until the timeout and be cut. So the listener closes first,
    and connections are left alone until the requests in flight (counted from their headers on)
    are answered; only then does aiohttp close the idle ones (`CLOSE_SECONDS` for any straggler).
    """
    for site in list(runner.sites):
        await site.stop()
    if not await in_flight.wait_idle(seconds):
        log.warning("%d request(s) still in flight after %.0f s: cutting them", in_flight.count, seconds)
    await runner.cleanup()


async def serve(
    settings: ServerSettings,
    *,
    before_ready: Callable[[], Awaitable[None]] | None = None,
    reuse_port: bool = False,
    worker: int = 0,
) -> int:
    """Run until SIGTERM/SIGINT, then drain; 0 when the drain finished.

    Worker number `worker` of several (`workers`) listens with `reuse_port` and awaits
    `before_ready` (its siblings) between loading its model and reporting ready.
    """
    metrics, holder, in_flight = Metrics(), _Model(), InFlight()
    plane = DataPlane(settings.name, settings.max_request_rows)
    intake = Intake(settings.max_body_bytes, settings.read_timeout_seconds)
    metrics.worker.labels(str(worker)).set(1)
    directory = Path(tempfile.mkdtemp(prefix="optimodel-serve-", dir=settings.load.directory))
    settings = replace(settings, load=replace(settings.load, directory=directory))
    runner = web.AppRunner(
        build_app(settings, plane, metrics, in_flight, intake),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=CLOSE_SECONDS,
        keepalive_timeout=settings.keepalive_timeout_seconds,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_port=reuse_port).start()
        log.info("listening on %s:%d, loading %s", settings.host, settings.port, settings.load.uri)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loading = asyncio.create_task(_load(settings, plane, metrics, holder, in_flight, before_ready))
        mirror = Mirror(settings.mirror, settings.name, metrics) if settings.mirror else None
        if mirror is not None:
            mirror.start()
            plane.observer = mirror.offer
            log.info("mirroring %d%% of inference requests to %s", mirror.settings.percent, mirror.endpoint)
        await stop.wait()
        plane.drain()
        metrics.ready.set(0)
        loading.cancel()
        if settings.drain_delay_seconds > 0:
            log.info(
                "signal received: unready, still serving for %.1f s while endpoints are updated",
                settings.drain_delay_seconds,
            )
            await asyncio.sleep(settings.drain_delay_seconds)  # the product's delay, not a test wait
        log.info("closing the listener; draining requests in flight (up to %.0f s)", settings.drain_seconds)
        await _drain(runner, in_flight, settings.drain_seconds)
        if mirror is not None:
            await mirror.close()
        await holder.close()
        intake.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    log.info("drained; exiting")
    return 0


def run(
    settings: ServerSettings,
    *,
    before_ready: Callable[[], Awaitable[None]] | None = None,
    reuse_port: bool = False,
    worker: int = 0,
) -> int:
    """`serve` on uvloop: a C event loop, +25% req/s at concurrency 1 over asyncio's own when tried."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings, before_ready=before_ready, reuse_port=reuse_port, worker=worker))
