"""Request bodies in: size limit, read timeout, and large bodies decoded off the event loop. Serve layer.

May import aiohttp (the request's body stream), asyncio, `errors` and the stdlib; nothing of the
model. The transports hand it their decode function (bytes -> the arrays they need), so v1 and v2
stay translators and every body is read the same way.

Why: decoding JSON costs memory of about ten times the body (a Python object per number, then a
float64 array before the cast) and CPU time during which the event loop answers nothing, probes
included. So bodies above `LARGE_BODY_BYTES` (or of unknown length) are read and decoded one at a
time, in a thread of their own; the others are small enough to decode inline. The raw bytes are not
cached on the request (aiohttp's `read()` would keep them until the answer is sent): once decoded,
only the compact arrays stay. A body that does not arrive within the read timeout frees its slot
(408) rather than hold it for a client that stalled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from optimodel.serve.errors import PayloadTooLarge, RequestTimeout

T = TypeVar("T")

LARGE_BODY_BYTES = 256 * 1024  # smaller bodies decode inline: a few milliseconds of the loop at most
_CHUNK = 1 << 16


class Intake:
    """Reads and decodes request bodies; one large body at a time."""

    def __init__(self, max_body_bytes: int, read_timeout_s: float) -> None:
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        self._large: asyncio.Semaphore | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    def _lane(self) -> asyncio.Semaphore:
        """Created on first use, inside the running loop."""
        if self._large is None:
            self._large = asyncio.Semaphore(1)
        return self._large

    async def decode(self, request: web.Request, parse: Callable[[bytes], T]) -> T:
        """`parse(body)`: inline for a small body, in the decode thread (one at a time) for a large one."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise PayloadTooLarge(self._too_large(length))
        if length is not None and length <= LARGE_BODY_BYTES:
            return parse(await self._read(request))
        async with self._lane():
            body = await self._read(request)
            return await asyncio.get_running_loop().run_in_executor(self._executor, parse, body)

    async def _read(self, request: web.Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.read_timeout_s):
                async for chunk in request.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise PayloadTooLarge(self._too_large(size))
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.read_timeout_s:g} s ({size} bytes read)"
            ) from None
        return b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return f"request body size {size} bytes or more exceeds the limit of {self.max_body_bytes} bytes"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
