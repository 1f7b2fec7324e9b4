"""`s3://` store through boto3: AWS or any S3-compatible server. I/O edge layer.

Credentials come from boto3's usual chain (environment, profile, instance role) and are never
logged; with no credentials anywhere, requests go unsigned (public artifacts). Errors are mapped to
messages of our own that name the URI or the endpoint at fault: what the remote server said (an
error body, a page it answered instead of XML) never reaches a message, since messages end up in
Events and status that tenants read. Reads are capped (`max_bytes`) and every call has a deadline
(`Limits`): an endpoint that streams forever or never answers costs bounded time and memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from optimodel.errors import AccessDeniedError, NotFoundError, ObjectTooLarge, StorageError
from optimodel.spec import S3Settings
from optimodel.storage.base import Limits, ObjectInfo
from optimodel.storage.uris import join_uri, split_uri

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}
_CODE = re.compile(r"[A-Z][A-Za-z]{1,39}|[1-5][0-9]{2}")  # S3's CamelCase codes, or an HTTP status


def safe_code(code: object) -> str:
    """An S3 error code as we may repeat it: a short CamelCase word, else a placeholder.

    The code comes from the remote server; anything that is not a plausible S3 code is dropped so
    that a server cannot smuggle its own text into our messages.
    """
    text = str(code)
    return text if _CODE.fullmatch(text) else "an unrecognized error code"



def _inside(destination: Path, relative: str, uri: str) -> Path:
    """Where a key below a directory prefix lands; refused when the key would leave `destination`
    (`..` parts, an absolute path): whoever can write the bucket must not write the reader's files."""
    root = destination.resolve()
    target = (root / relative).resolve()
    if not relative or target == root or not target.is_relative_to(root):
        raise StorageError(f"{uri}: refused the object {relative!r}: it would be written outside the download folder")
    return target


class S3Store:
    def __init__(
        self, settings: S3Settings, credentials: tuple[str, str] | None = None, limits: Limits | None = None
    ) -> None:
        """`credentials` (access key id, secret) override boto3's chain: the operator reads them per resource."""
        self._settings = settings
        limits = limits or Limits()
        keys = {} if credentials is None else {
            "aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
        # A session of its own: boto3's default session caches the first credentials it ever found.
        session = boto3.session.Session(**keys)
        # No credentials anywhere (a serving pod of public artifacts): unsigned requests, not an error.
        unsigned = {"signature_version": UNSIGNED} if credentials is None and session.get_credentials() is None else {}
        config = Config(
            region_name=settings.region,
            s3={"addressing_style": settings.addressing_style},
            retries={"max_attempts": limits.max_attempts, "mode": "standard"},
            connect_timeout=limits.connect_timeout,
            read_timeout=limits.read_timeout,
            **unsigned,
        )
        self._client: Any = session.client(
            "s3", endpoint_url=settings.endpoint, config=config, verify=settings.ca_bundle or None
        )

    def _where(self) -> str:
        return self._settings.endpoint or f"AWS S3 ({self._settings.region})"

    def _fail(self, error: Exception, uri: str) -> Exception:
        """Our message for `error`; never the error's own text, which may quote the server's answer."""
        if isinstance(error, EndpointConnectionError):
            return StorageError(f"cannot reach the S3 endpoint {self._where()} for {uri}")
        if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
            return StorageError(f"the S3 endpoint {self._where()} did not answer in time for {uri}")
        if isinstance(error, NoCredentialsError):
            return AccessDeniedError(
                f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(error, ClientError):
            code = safe_code(error.response.get("Error", {}).get("Code", ""))
            if code in _DENIED:
                return AccessDeniedError(f"{self._where()} refused the credentials for {uri} ({code})")
            if code == "NoSuchBucket":
                return NotFoundError(f"the bucket of {uri} does not exist")
            if code in _MISSING:
                return NotFoundError(f"{uri} does not exist")
            return StorageError(f"S3 error for {uri} at {self._where()}: {code}")
        # ResponseParserError (a page instead of XML) quotes the body: name the kind of failure only.
        return StorageError(
            f"S3 error for {uri} at {self._where()}: {type(error).__name__} (not a valid S3 answer)"
        )

    def _call(self, uri: str, method: str, **kwargs: Any) -> Any:
        """One botocore call; any failure but ours becomes our own StorageError (botocore's parser
        errors are not even BotoCoreErrors, and a malformed answer can raise KeyError or ValueError)."""
        try:
            return getattr(self._client, method)(**kwargs)
        except StorageError:
            raise
        except Exception as error:
            raise self._fail(error, uri) from None

    def _list(self, uri: str, bucket: str, prefix: str) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        token: dict[str, str] = {}
        while True:
            page = self._call(uri, "list_objects_v2", Bucket=bucket, Prefix=prefix, **token)
            objects += page.get("Contents", [])
            if not page.get("IsTruncated"):
                return objects
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def info(self, uri: str) -> ObjectInfo:
        _, bucket, key = split_uri(uri)
        try:
            head = self._call(uri, "head_object", Bucket=bucket, Key=key)
            if "ContentLength" not in head or "ETag" not in head:
                raise StorageError(f"S3 error for {uri} at {self._where()}: the answer is not an S3 object head")
            return ObjectInfo(uri=uri, size_bytes=int(head["ContentLength"]), version=str(head["ETag"]))
        except NotFoundError:
            objects = self._list(uri, bucket, key.rstrip("/") + "/")
            if not objects:
                raise
            size = sum(int(item["Size"]) for item in objects)
            version = "+".join(sorted(str(item["ETag"]) for item in objects))
            return ObjectInfo(uri=uri, size_bytes=size, version=version)

    def exists(self, uri: str) -> bool:
        try:
            self.info(uri)
        except NotFoundError:
            return False
        return True

    def _read(self, uri: str, max_bytes: int | None, sink: Callable[[bytes], None]) -> int:
        """Stream one object into `sink`; its size. ObjectTooLarge past `max_bytes`, whatever the
        server announced (it may send more than its Content-Length, or no end at all)."""
        _, bucket, key = split_uri(uri)
        answer = self._call(uri, "get_object", Bucket=bucket, Key=key)
        body, size = answer["Body"], 0
        try:
            if max_bytes is not None and int(answer.get("ContentLength") or 0) > max_bytes:
                raise ObjectTooLarge(f"{uri} is larger than the {max_bytes} bytes allowed")
            for chunk in body.iter_chunks(1 << 20):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ObjectTooLarge(f"{uri} is larger than the {max_bytes} bytes allowed")
                sink(chunk)
        except StorageError:
            raise
        except Exception as error:
            raise self._fail(error, uri) from None
        finally:
            with contextlib.suppress(Exception):
                body.close()
        return size

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; with `max_bytes`, ObjectTooLarge rather than reading more than that."""
        parts: list[bytes] = []
        self._read(uri, max_bytes, parts.append)
        return b"".join(parts)

    def sha256(self, uri: str, max_bytes: int) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = self._read(uri, max_bytes, digest.update)
        return digest.hexdigest(), size

    def download(self, uri: str, destination: Path) -> Path:
        _, bucket, key = split_uri(uri)
        try:
            self._call(uri, "head_object", Bucket=bucket, Key=key)
        except NotFoundError:
            prefix = key.rstrip("/") + "/"
            objects = self._list(uri, bucket, prefix)
            if not objects:
                raise
            for item in objects:
                if item["Key"].endswith("/"):
                    continue  # a "folder" marker some tools create: nothing to download
                target = _inside(destination, item["Key"][len(prefix):], uri)
                target.parent.mkdir(parents=True, exist_ok=True)
                self._call(uri, "download_file", Bucket=bucket, Key=item["Key"], Filename=str(target))
            return destination
        destination.parent.mkdir(parents=True, exist_ok=True)
        self._call(uri, "download_file", Bucket=bucket, Key=key, Filename=str(destination))
        return destination

    def publish(self, files: dict[str, Path], prefix: str) -> None:
        """Upload to a staging key, copy into place, write the last file (the marker) last."""
        _, bucket, key = split_uri(prefix)
        staging = join_uri(prefix.rstrip("/") + f".staging-{uuid.uuid4().hex[:12]}")
        _, _, staging_key = split_uri(staging)
        try:
            for name, path in files.items():
                self._call(prefix, "upload_file", Filename=str(path), Bucket=bucket, Key=f"{staging_key}/{name}")
            for name in files:
                self._call(prefix, "copy_object", Bucket=bucket, Key=f"{key.rstrip('/')}/{name}",
                           CopySource={"Bucket": bucket, "Key": f"{staging_key}/{name}"})
        finally:
            for name in files:
                with contextlib.suppress(BotoCoreError, ClientError):
                    self._client.delete_object(Bucket=bucket, Key=f"{staging_key}/{name}")

    def put_bytes(self, uri: str, data: bytes) -> None:
        _, bucket, key = split_uri(uri)
        self._call(uri, "put_object", Bucket=bucket, Key=key, Body=data)

    def delete(self, uri: str) -> None:
        _, bucket, key = split_uri(uri)
        self._call(uri, "delete_object", Bucket=bucket, Key=key)

    def delete_prefix(self, prefix: str) -> None:
        _, bucket, key = split_uri(prefix)
        for item in self._list(prefix, bucket, key.rstrip("/") + "/"):
            self._call(prefix, "delete_object", Bucket=bucket, Key=item["Key"])
