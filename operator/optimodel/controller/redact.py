"""Keep secret values out of every log line, `--verbose` included. Controller layer.

Two guards. First, the client libraries that log what passes over the wire are held at INFO even
in debug mode: the Kubernetes client logs whole response bodies at DEBUG (a Secret's data, base64),
botocore logs request headers (the access key id) and error bodies. Second, every credential the
operator reads is registered here, and a log record factory replaces any registered value (raw or
base64) before a handler sees the record: kopf's JSON formatter, its Event poster and any handler
a test or a user adds all get the redacted text.
"""

from __future__ import annotations

import base64
import logging
import threading
import traceback
from typing import Any

REDACTED = "<redacted>"
# Loggers that print request or response bodies and headers at DEBUG.
WIRE_LOGGERS = ("kubernetes", "urllib3", "botocore", "boto3", "s3transfer", "aiohttp.client")
MIN_LENGTH = 4  # shorter values would redact ordinary words

_values: set[str] = set()
_lock = threading.Lock()
_installed = False


def register(*secrets: str) -> None:
    """Remember secret values (and their base64 forms, as the API server sends them) for redaction."""
    forms = set()
    for value in secrets:
        if len(value) >= MIN_LENGTH:
            forms.add(value)
            forms.add(base64.b64encode(value.encode()).decode())
    with _lock:
        _values.update(forms)


def redact(text: str) -> str:
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _clean(record: logging.LogRecord) -> None:
    if not _values:
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: the handler reports it, there is nothing to redact yet
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        record.exc_info = None


def install(verbose: bool) -> None:
    """Quiet the wire loggers and redact registered values from every record from now on."""
    global _installed
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _clean(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
