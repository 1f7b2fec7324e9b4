"""`file://` store: local runs and tests. I/O edge layer."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from optimodel.errors import NotFoundError, ObjectTooLarge, StorageError
from optimodel.storage.base import ObjectInfo
from optimodel.storage.uris import split_uri


def _path(uri: str) -> Path:
    return Path(split_uri(uri)[2])


class LocalStore:
    def info(self, uri: str) -> ObjectInfo:
        path = _path(uri)
        if not path.exists():
            raise NotFoundError(f"{uri} does not exist")
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        newest = max((p.stat().st_mtime_ns for p in files), default=0)
        return ObjectInfo(uri=uri, size_bytes=size, version=f"{size}-{newest}")

    def exists(self, uri: str) -> bool:
        return _path(uri).exists()

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        path = _path(uri)
        if not path.is_file():
            raise NotFoundError(f"{uri} does not exist")
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise ObjectTooLarge(f"{uri} is larger than the {max_bytes} bytes allowed")
        return path.read_bytes()

    def sha256(self, uri: str, max_bytes: int) -> tuple[str, int]:
        path = _path(uri)
        if not path.is_file():
            raise NotFoundError(f"{uri} does not exist")
        if path.stat().st_size > max_bytes:
            raise ObjectTooLarge(f"{uri} is larger than the {max_bytes} bytes allowed")
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def download(self, uri: str, destination: Path) -> Path:
        path = _path(uri)
        if not path.exists():
            raise NotFoundError(f"{uri} does not exist")
        if path.is_dir():
            shutil.copytree(path, destination, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        return destination

    def publish(self, files: dict[str, Path], prefix: str) -> None:
        """Stage in a sibling temporary directory, then rename it into place in one step."""
        final = _path(prefix)
        if final.exists():
            return
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=final.parent))
            for name, source in files.items():
                shutil.copyfile(source, staging / name)
            os.replace(staging, final)
        except OSError as error:
            if final.exists():
                return
            raise StorageError(f"cannot write {prefix}: {error.strerror}") from None

    def put_bytes(self, uri: str, data: bytes) -> None:
        path = _path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError as error:
            raise StorageError(f"cannot write {uri}: {error.strerror}") from None

    def delete(self, uri: str) -> None:
        try:
            _path(uri).unlink(missing_ok=True)
        except OSError as error:
            raise StorageError(f"cannot delete {uri}: {error.strerror}") from None

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(_path(prefix), ignore_errors=True)
