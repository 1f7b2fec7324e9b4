"""What every artifact store offers. Pure interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size_bytes: int
    version: str  # ETag for S3, size and mtime for files: changes when the object changes


@dataclass(frozen=True)
class Limits:
    """Deadlines of one store: botocore's socket timeouts and a bounded number of attempts.

    The defaults suit the Job (large downloads on a healthy network); the operator passes tighter
    ones, since a reconcile holds one of its few worker threads while it waits.
    """

    connect_timeout: float = 5
    read_timeout: float = 60
    max_attempts: int = 3


class ArtifactStore(Protocol):
    def info(self, uri: str) -> ObjectInfo:
        """Size and version tag of an object or directory; NotFoundError when absent."""
        ...

    def exists(self, uri: str) -> bool: ...

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The whole object; ObjectTooLarge when `max_bytes` is given and the object is larger."""
        ...

    def sha256(self, uri: str, max_bytes: int) -> tuple[str, int]:
        """(hex digest, size) of one object, streamed; ObjectTooLarge beyond `max_bytes`."""
        ...

    def download(self, uri: str, destination: Path) -> Path:
        """Copy an object (or every object under a directory prefix) to `destination`."""
        ...

    def publish(self, files: dict[str, Path], prefix: str) -> None:
        """Make `files` appear under `prefix` all at once, the last name in `files` last."""
        ...

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write one small object in one step (readers see the old or the new, never half)."""
        ...

    def delete(self, uri: str) -> None:
        """Remove one object; nothing happens when it does not exist."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object below `prefix` (a directory: `<prefix>/...`)."""
        ...
