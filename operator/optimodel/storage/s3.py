"""`s3://` store through boto3: AWS or any S3-compatible server. I/O edge layer.

Credentials come from boto3's usual chain (environment, profile, instance role) and are never
logged. Errors are mapped to messages that name the URI or the endpoint at fault.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from optimodel.errors import AccessDeniedError, NotFoundError, StorageError
from optimodel.spec import S3Settings
from optimodel.storage.base import ObjectInfo
from optimodel.storage.uris import join_uri, split_uri

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class S3Store:
    def __init__(self, settings: S3Settings, credentials: tuple[str, str] | None = None) -> None:
        """`credentials` (access key id, secret) override boto3's chain: the operator reads them per resource."""
        self._settings = settings
        keys = {} if credentials is None else {
            "aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
        config = Config(
            region_name=settings.region,
            s3={"addressing_style": settings.addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        # A session of its own: boto3's default session caches the first credentials it ever found.
        self._client: Any = boto3.session.Session(**keys).client(
            "s3", endpoint_url=settings.endpoint, config=config, verify=settings.ca_bundle or None
        )

    def _where(self) -> str:
        return self._settings.endpoint or f"AWS S3 ({self._settings.region})"

    def _fail(self, error: Exception, uri: str) -> Exception:
        if isinstance(error, EndpointConnectionError):
            return StorageError(f"cannot reach the S3 endpoint {self._where()} for {uri}")
        if isinstance(error, NoCredentialsError):
            return AccessDeniedError(
                f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _DENIED:
                return AccessDeniedError(f"{self._where()} refused the credentials for {uri} ({code})")
            if code == "NoSuchBucket":
                return NotFoundError(f"the bucket of {uri} does not exist")
            if code in _MISSING:
                return NotFoundError(f"{uri} does not exist")
            return StorageError(f"S3 error for {uri}: {code}")
        return StorageError(f"S3 error for {uri} at {self._where()}: {error}")

    def _call(self, uri: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(**kwargs)
        except (BotoCoreError, ClientError) as error:
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

    def read_bytes(self, uri: str) -> bytes:
        _, bucket, key = split_uri(uri)
        body = self._call(uri, "get_object", Bucket=bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        except BotoCoreError as error:
            raise self._fail(error, uri) from None

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
                target = destination / item["Key"][len(prefix):]
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
