"""What the operator reads from the artifact store: the source version and stored results. Adapter.

Through `optimodel.storage`, with the credentials of the resource's Secret. Stores are cached per
(settings, credentials) so that a resync does not build a new boto3 client every time, and the last
store of each resource is remembered: deleting a namespace deletes the Secret too, before the
resource's finalizer has removed its results.

A stored result is trusted only as far as it checks out: whoever can write the bucket can write a
recipe pointer, so the report it names must lie under the resource's own prefix, be small, parse,
and name an artifact under the same prefix that exists with the size and sha256 the report says
(hashed once per object version, then remembered). Every read is capped and every call has the
operator's short deadlines (`OPERATOR_LIMITS`).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import ValidationError

from optimodel.errors import NotFoundError, ObjectTooLarge, OptimodelError, StorageError
from optimodel.report import Report
from optimodel.spec import OptimizedModelSpec
from optimodel.storage import ArtifactStore, Limits, join_uri, open_store

MAX_CACHED_STORES = 64
MAX_POINTER_BYTES = 64 * 1024
MAX_REPORT_BYTES = 4 * 1024 * 1024
MAX_ARTIFACT_BYTES = 4 * 1024 * 1024 * 1024
MAX_VERIFIED = 4096
# A reconcile holds one of the operator's few threads: a silent endpoint must give it back soon.
OPERATOR_LIMITS = Limits(connect_timeout=3, read_timeout=10, max_attempts=2)


class InvalidResult(OptimodelError):
    """A recipe pointer, report or artifact does not hold what it claims: never served."""

    reason = "ResultInvalid"


def pointer_uri(spec: OptimizedModelSpec, recipe_key: str) -> str:
    return join_uri(spec.artifacts.uri, "recipes", f"{recipe_key}.json")


def under_prefix(uri: str, prefix: str) -> bool:
    """`uri` names an object below `prefix` (same bucket and folder, no `..` or empty parts)."""
    base = prefix.rstrip("/") + "/"
    if not uri.startswith(base):
        return False
    parts = uri[len(base):].split("/")
    return all(part not in ("", ".", "..") for part in parts)


class Artifacts:
    def __init__(self, limits: Limits = OPERATOR_LIMITS) -> None:
        self.limits = limits
        self._stores: dict[tuple[Any, ...], ArtifactStore] = {}
        self._last: dict[str, tuple[Any, ArtifactStore]] = {}  # resource uid -> (s3 settings, store)
        self._verified: dict[tuple[str, str], tuple[str, int]] = {}  # (uri, version) -> (sha256, size)
        self._lock = threading.Lock()

    def store(
        self, spec: OptimizedModelSpec, credentials: tuple[str, str] | None, owner_uid: str | None = None
    ) -> ArtifactStore:
        """The store for `spec` with `credentials`, remembered as the last store of `owner_uid`."""
        key = (spec.artifacts.s3, credentials)
        with self._lock:
            if key not in self._stores:
                if len(self._stores) >= MAX_CACHED_STORES:
                    self._stores.pop(next(iter(self._stores)))
                self._stores[key] = open_store(spec.artifacts.uri, spec.artifacts.s3, credentials, self.limits)
            if owner_uid is not None:
                self._last[owner_uid] = (spec.artifacts.s3, self._stores[key])
            return self._stores[key]

    def last_store(self, spec: OptimizedModelSpec, owner_uid: str) -> ArtifactStore | None:
        """The store this resource last used with the same S3 settings, if this process used one."""
        with self._lock:
            settings, store = self._last.get(owner_uid, (None, None))
        return store if settings == spec.artifacts.s3 else None

    def forget(self, owner_uid: str) -> None:
        with self._lock:
            self._last.pop(owner_uid, None)

    @staticmethod
    def source_version(store: ArtifactStore, spec: OptimizedModelSpec) -> str:
        """The source object's version tag (ETag): a new upload under the same URI is a new recipe."""
        return store.info(spec.source.uri).version

    def stored_result(
        self, store: ArtifactStore, spec: OptimizedModelSpec, recipe_key: str
    ) -> tuple[Report, str] | None:
        """The report of a recipe already optimized (here or in another namespace), with its URI.

        None when no pointer exists; InvalidResult when the pointer, its report or the artifact
        does not check out (see the module docstring).
        """
        where = pointer_uri(spec, recipe_key)
        try:
            raw = store.read_bytes(where, MAX_POINTER_BYTES)
        except NotFoundError:
            return None
        except ObjectTooLarge:
            raise InvalidResult(f"the recipe pointer {where} is not one a Job wrote (too large)") from None
        try:
            pointer = json.loads(raw)
        except ValueError:
            raise InvalidResult(f"the recipe pointer {where} is not JSON") from None
        report_uri = pointer.get("reportUri") if isinstance(pointer, dict) else None
        if not isinstance(report_uri, str):
            raise InvalidResult(f"the recipe pointer {where} names no reportUri")
        try:
            return self.report(store, spec, report_uri), report_uri
        except NotFoundError:
            raise InvalidResult(f"the recipe pointer {where} names a report that does not exist") from None

    def report(self, store: ArtifactStore, spec: OptimizedModelSpec, report_uri: str) -> Report:
        """The report at `report_uri`, checked against the prefix and the artifact it names."""
        prefix = spec.artifacts.uri
        if not under_prefix(report_uri, prefix):
            raise InvalidResult(f"the report {report_uri} is not under this resource's prefix {prefix}")
        try:
            report = Report.from_json(store.read_bytes(report_uri, MAX_REPORT_BYTES))
        except ObjectTooLarge:
            raise InvalidResult(f"the report {report_uri} is not one a Job wrote (too large)") from None
        except (ValidationError, ValueError):  # pydantic's text quotes the input: say it in our words
            raise InvalidResult(f"the report {report_uri} is not a valid optimodel report") from None
        if report.artifact is not None:
            self._verify_artifact(store, prefix, report_uri, report)
        return report

    def _verify_artifact(self, store: ArtifactStore, prefix: str, report_uri: str, report: Report) -> None:
        artifact = report.artifact
        assert artifact is not None
        if not under_prefix(artifact.uri, prefix):
            raise InvalidResult(f"the report {report_uri} names an artifact outside the prefix {prefix}")
        try:
            info = store.info(artifact.uri)
        except NotFoundError:
            raise InvalidResult(f"the artifact {artifact.uri} named by {report_uri} does not exist") from None
        if info.size_bytes != artifact.size_bytes:
            raise InvalidResult(
                f"the artifact {artifact.uri} has {info.size_bytes} bytes, its report says {artifact.size_bytes}")
        with self._lock:
            known = self._verified.get((artifact.uri, info.version))
        if known is None:
            try:
                known = store.sha256(artifact.uri, min(artifact.size_bytes, MAX_ARTIFACT_BYTES))
            except ObjectTooLarge:
                raise InvalidResult(f"the artifact {artifact.uri} is larger than its report says") from None
            except NotFoundError:
                raise InvalidResult(f"the artifact {artifact.uri} named by {report_uri} does not exist") from None
            with self._lock:
                if len(self._verified) >= MAX_VERIFIED:
                    self._verified.pop(next(iter(self._verified)))
                self._verified[(artifact.uri, info.version)] = known
        if known != (artifact.sha256, artifact.size_bytes):
            raise InvalidResult(f"the artifact {artifact.uri} does not have the sha256 its report {report_uri} names")


__all__ = ["Artifacts", "InvalidResult", "StorageError", "pointer_uri", "under_prefix"]
