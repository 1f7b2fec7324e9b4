"""Timestamps of what the operator's children and resources go through, seen by watches of our own.

Used by bench/operator_bench.py. The benchmark must not trust the API server's timestamps (whole
seconds) nor the operator's own log: it watches Jobs, Deployments and OptimizedModels in every
namespace and records, on its own monotonic clock, the first moment each milestone was seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch

from optimodel.spec import API_GROUP, API_VERSION, KIND, PLURAL

MANAGED = "app.kubernetes.io/managed-by=optimodel"
Key = tuple[str, str]  # (namespace, OptimizedModel name)


@dataclass
class Milestones:
    """First time (time.monotonic) each step was seen for one OptimizedModel."""

    job_complete: float | None = None
    deployment_created: float | None = None
    deployment_available: float | None = None
    optimized: float | None = None
    ready: float | None = None


def _owner(meta: Any) -> str | None:
    for ref in meta.owner_references or []:
        if ref.kind == KIND:
            return str(ref.name)
    return None


def _condition_true(conditions: list[Any] | None, type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conditions or [])


def _available(deployment: Any) -> bool:
    """Rolled out and available, as `kubectl rollout status` says (0 replicas: at once)."""
    spec, status = deployment.spec, deployment.status
    wanted = spec.replicas if spec.replicas is not None else 1
    return bool(
        (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        and (status.updated_replicas or 0) >= wanted
        and (status.available_replicas or 0) >= wanted
    )


@dataclass
class Recorder:
    """Watches in daemon threads; `milestones` is filled as events arrive."""

    api: client.ApiClient
    milestones: dict[Key, Milestones] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def mark(self, key: Key, step: str) -> None:
        now = time.monotonic()
        with self._lock:
            entry = self.milestones.setdefault(key, Milestones())
            if getattr(entry, step) is None:
                setattr(entry, step, now)

    def get(self, key: Key) -> Milestones:
        with self._lock:
            return self.milestones.get(key, Milestones())

    def start(self) -> None:
        batch, apps = client.BatchV1Api(self.api), client.AppsV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)
        streams: list[tuple[Callable[..., Any], Callable[[str, Any], None], dict[str, Any]]] = [
            (batch.list_job_for_all_namespaces, self._on_job, {"label_selector": MANAGED}),
            (apps.list_deployment_for_all_namespaces, self._on_deployment, {"label_selector": MANAGED}),
            (
                custom.list_cluster_custom_object,
                self._on_model,
                {"group": API_GROUP, "version": API_VERSION, "plural": PLURAL},
            ),
        ]
        for lister, handler, kwargs in streams:
            threading.Thread(target=self._run, args=(lister, handler, kwargs), daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _events(self, lister: Callable[..., Any], kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while not self._stop.is_set():
            try:
                yield from watch.Watch().stream(lister, timeout_seconds=30, **kwargs)
            except Exception:  # noqa: BLE001 - the API server going away at shutdown ends the watch
                time.sleep(0.2)

    def _run(self, lister: Callable[..., Any], handler: Callable[[str, Any], None], kwargs: dict[str, Any]) -> None:
        for event in self._events(lister, kwargs):
            if self._stop.is_set():
                return
            handler(event["type"], event["object"])

    def _on_job(self, kind: str, job: Any) -> None:
        owner = _owner(job.metadata)
        if owner and job.status and _condition_true(job.status.conditions, "Complete"):
            self.mark((job.metadata.namespace, owner), "job_complete")

    def _on_deployment(self, kind: str, deployment: Any) -> None:
        owner = _owner(deployment.metadata)
        if owner is None or kind == "DELETED":
            return
        key = (deployment.metadata.namespace, owner)
        self.mark(key, "deployment_created")
        if deployment.status and _available(deployment):
            self.mark(key, "deployment_available")

    def _on_model(self, kind: str, body: dict[str, Any]) -> None:
        meta, status = body["metadata"], body.get("status") or {}
        key = (meta["namespace"], meta["name"])
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        current = status.get("observedGeneration") == meta.get("generation")
        if current and conditions.get("Optimized", {}).get("status") == "True":
            self.mark(key, "optimized")
        if current and conditions.get("Ready", {}).get("status") == "True":
            self.mark(key, "ready")
