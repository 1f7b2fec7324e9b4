"""The artifact store: `file://` for local runs, `s3://` through boto3. I/O edge layer.

Readers treat `report.json` as the commit marker of a result: it is written last, after the
artifact is complete under its final key, so a crash never leaves a half-published result.
"""

from __future__ import annotations

from optimodel.spec import S3Settings
from optimodel.storage.base import ArtifactStore, Limits, ObjectInfo
from optimodel.storage.local import LocalStore
from optimodel.storage.uris import join_uri, split_uri


def open_store(
    uri: str,
    settings: S3Settings | None = None,
    credentials: tuple[str, str] | None = None,
    limits: Limits | None = None,
) -> ArtifactStore:
    """The store that serves `uri`'s scheme; `credentials` (key id, secret) and `limits` only matter for s3."""
    scheme, _, _ = split_uri(uri)
    if scheme == "file":
        return LocalStore()
    from optimodel.storage.s3 import S3Store

    return S3Store(settings or S3Settings(), credentials, limits)


__all__ = ["ArtifactStore", "Limits", "ObjectInfo", "LocalStore", "open_store", "join_uri", "split_uri"]
