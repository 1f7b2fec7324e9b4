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
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def http_status(error: ServeError) -> int:
    return error.status


def from_http_status(status: int, message: str) -> ServeError:
    """The domain error for a status the HTTP library raised itself (unknown route, body too big)."""
    return _BY_AIOHTTP_STATUS.get(status, ServeError)(message)
