"""What the operator reads from the artifact store: the source version and stored results. Adapter.

Through `optimodel.storage`, with the credentials of the resource's Secret. Stores are cached per
(settings, credentials) so that a resync does not build a new boto3 client every time, and the last
store of each resource is remembered: deleting a namespace deletes the Secret too, before the
resource's finalizer has removed its results.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from optimodel.errors import NotFoundError
from optimodel.report import Report
from optimodel.spec import OptimizedModelSpec
from optimodel.storage import ArtifactStore, join_uri, open_store

MAX_CACHED_STORES = 64


def pointer_uri(spec: OptimizedModelSpec, recipe_key: str) -> str:
    return join_uri(spec.artifacts.uri, "recipes", f"{recipe_key}.json")


class Artifacts:
    def __init__(self) -> None:
        self._stores: dict[tuple[Any, ...], ArtifactStore] = {}
        self._last: dict[str, tuple[Any, ArtifactStore]] = {}  # resource uid -> (s3 settings, store)
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
                self._stores[key] = open_store(spec.artifacts.uri, spec.artifacts.s3, credentials)
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

    @staticmethod
    def stored_result(
        store: ArtifactStore, spec: OptimizedModelSpec, recipe_key: str
    ) -> tuple[Report, str] | None:
        """The report of a recipe already optimized (here or in another namespace), with its URI."""
        try:
            pointer = json.loads(store.read_bytes(pointer_uri(spec, recipe_key)))
            return Artifacts.report(store, pointer["reportUri"]), pointer["reportUri"]
        except NotFoundError:
            return None

    @staticmethod
    def report(store: ArtifactStore, report_uri: str) -> Report:
        return Report.from_json(store.read_bytes(report_uri))
