"""Errors the server answers with, and their HTTP status: the one place that maps them. Serve layer.

Pure: stdlib only. Transports raise these; the error middleware in `app` turns any of them into
`{"error": message}` with `http_status(error)`. Anything else that escapes a handler is a bug and
becomes a 500 there (logged with its traceback), never a crash.
"""

from __future__ import annotations


class ServeError(Exception):
    """Base: a request the server refuses, with a message the client can act on."""

    status = 500


class InvalidInput(ServeError):
    """Malformed JSON, wrong shape or datatype, mixed request formats: the client must fix it."""

    status = 400


class ModelNotFound(ServeError):
    """The path names a model or version this server does not serve."""

    status = 404


class PayloadTooLarge(ServeError):
    """The body exceeds --max-body-bytes."""

    status = 413


class MethodNotAllowed(ServeError):
    status = 405


class UnsupportedMediaType(ServeError):
    status = 415


class RequestTimeout(ServeError):
    """The body did not arrive within --read-timeout-seconds: a stalled client must not hold a slot."""

    status = 408


class TooManyRequests(ServeError):
    """More requests in flight than --max-in-flight: back off and retry (here or on another replica).

    Refusing at once bounds the memory and the latency of the requests already admitted; a queue
    that grows without bound turns a burst into an OOM kill of every replica in turn.
    """

    status = 429

    def __init__(self, message: str, *, retry_after_seconds: int = 1) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class ModelNotReady(ServeError):
    """Still loading, draining, or refused (digest mismatch): try another replica."""

    status = 503


class LoadError(Exception):
    """The model cannot be served (download, digest or load failed). Ends readiness, not the process."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        self.permanent = permanent
        super().__init__(message)


_BY_AIOHTTP_STATUS: dict[int, type[ServeError]] = {
    400: InvalidInput,
    404: ModelNotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def http_status(error: ServeError) -> int:
    return error.status


def http_headers(error: ServeError) -> dict[str, str]:
    """Headers the answer to `error` carries besides its body (`Retry-After` on a 429)."""
    if isinstance(error, TooManyRequests):
        return {"Retry-After": str(error.retry_after_seconds)}
    return {}


def from_http_status(status: int, message: str) -> ServeError:
    """The domain error for a status the HTTP library raised itself (unknown route, body too big)."""
    return _BY_AIOHTTP_STATUS.get(status, ServeError)(message)
