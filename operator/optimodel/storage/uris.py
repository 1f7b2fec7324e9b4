"""Parsing and joining `s3://bucket/key` and `file:///path` URIs. Pure."""

from __future__ import annotations

from urllib.parse import unquote

from optimodel.errors import SpecError


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) for s3; ("file", "", path) for file."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket:
            raise SpecError(f"{uri!r} has no bucket: expected s3://bucket/key")
        return "s3", bucket, key
    if uri.startswith("file://"):
        path = unquote(uri[len("file://"):])
        if not path:
            raise SpecError(f"{uri!r} has no path: expected file:///absolute/path")
        return "file", "", path
    raise SpecError(f"{uri!r} is not an s3:// or file:// URI")


def join_uri(prefix: str, *parts: str) -> str:
    """Append path parts to a prefix URI with exactly one slash between them."""
    joined = prefix.rstrip("/")
    for part in parts:
        joined += "/" + part.strip("/")
    return joined
