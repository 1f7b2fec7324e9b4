"""kopf handlers: thin shims from kopf's causes to `Reconciler.reconcile`. Controller layer.

Registered into a registry passed in (no import-time registration), so `optimodel operator` and the
tests build exactly the operator they run. One function answers resume, create, update and the
resync timer; Job and Deployment events re-reconcile their owner at once (a burst of them, once),
so a finished Job or a completed rollout shows in status within a second rather than at the next
resync, and so does a retry request (an annotation kopf's update diff does not see). Progress
lives in annotations and status is written by the reconciler, never from handler return values.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from optimodel.controller.artifacts import Artifacts
from optimodel.controller.deletion import ArtifactDeleter, RetryDeletion
from optimodel.controller.fairness import NamespaceQueue
from optimodel.controller.kube import Kube, make_api_client
from optimodel.controller.metrics import Metrics
from optimodel.controller.reconciler import Reconciler
from optimodel.controller.settings import Settings
from optimodel.errors import SpecError
from optimodel.reconcile import Event, retry_pending
from optimodel.reconcile.requeue import requeue_delay
from optimodel.resources import RETRY_ANNOTATION
from optimodel.resources.common import MANAGED_BY
from optimodel.spec import API_GROUP, API_VERSION, KIND, PLURAL

log = logging.getLogger(__name__)
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
CHILD_SELECTOR = ",".join(f"{key}={value}" for key, value in CHILD_LABELS.items())
CHILD_RESOURCES = (("batch", "jobs"), ("apps", "deployments"))  # watched; pods are only listed, by label
ANNOTATION_PREFIX = "optimodel.io"


def post_event(body: dict[str, Any], event: Event) -> None:
    kopf.event(cast(Any, body), type=event.type, reason=event.reason, message=event.message[:1024])


@dataclass
class Operator:
    """What the handlers share; built at startup, once the operator has logged in."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    reconciler: Reconciler | None = None
    deleter: ArtifactDeleter | None = None
    artifacts: Artifacts = field(default_factory=Artifacts)
    queue: NamespaceQueue | None = None
    _nudged: set[tuple[str, str]] = field(default_factory=set)  # nudged, their reconcile not started yet
    _nudging: set[asyncio.Task[None]] = field(default_factory=set)  # referenced until they end

    def start(self) -> Reconciler:
        settings = self.settings
        kube = Kube(make_api_client(settings.kubeconfig, settings.api_timeout_seconds))
        self.reconciler = Reconciler(
            kube, self.artifacts, settings.pods, self.metrics, post_event,
            policy=settings.policy, full_resync_seconds=settings.full_resync_seconds,
        )
        self.queue = NamespaceQueue(settings.workers, settings.namespace_workers)
        self.deleter = ArtifactDeleter(kube, self.artifacts, settings.namespaces, post_event, settings.policy)
        return self.reconciler

    async def reconcile(self, namespace: str, name: str, retry: int = 0) -> None:
        """One reconcile as kopf sees it, in its namespace's turn: our messages only, whatever went wrong.

        kopf posts a failed handler's exception text as an Event; an unexpected error (an API
        error quoting a response body, a bug) is logged here with its traceback and reaches the
        resource as a short message of our own. `retry`: kopf's count of failed attempts of this
        handler in a row (0 on the first).
        """
        assert self.reconciler is not None and self.queue is not None, "the startup handler builds them"
        try:
            outcome = await self.queue.run(namespace, functools.partial(self.reconciler.reconcile, namespace, name))
        except Exception as error:
            log.exception("reconcile of %s/%s failed", namespace, name)
            raise kopf.TemporaryError(
                f"reconcile failed ({type(error).__name__}); the operator's log has the details",
                delay=self.settings.retry_seconds,
            ) from None
        if outcome is None:
            return
        if outcome.permanent:
            raise kopf.PermanentError(outcome.permanent)
        if outcome.retry_after:
            # The pure layer says whether to look again; how soon backs off from OPTIMODEL_RETRY_SECONDS.
            # Events are not repeated: the reconciler posts one per condition transition only.
            settings = self.settings
            delay = requeue_delay(settings.retry_seconds, retry + 1, random.random(), settings.retry_max_seconds)
            raise kopf.TemporaryError(outcome.status.message, delay=delay)


    def nudge(self, namespace: str, name: str) -> None:
        """Ask for a reconcile of the resource, in its namespace's turn, and return at once.

        A rollout sends a burst of Deployment events; a reconcile reads the resource and its
        children as they are when it starts, so the nudges that come while one is already waiting
        add nothing, and are dropped. The event handler does not wait: kopf can let go of the
        event's body, and a thousand Deployments created at once cost a thousand small waiting tasks,
        not a thousand bodies held. Errors are logged (kopf does not retry event handlers anyway).
        """
        key = (namespace, name)
        if key in self._nudged:
            return
        self._nudged.add(key)
        task = asyncio.get_running_loop().create_task(self._reconcile_nudged(key))
        self._nudging.add(task)
        task.add_done_callback(self._nudging.discard)

    async def _reconcile_nudged(self, key: tuple[str, str]) -> None:
        assert self.reconciler is not None and self.queue is not None
        reconciler = self.reconciler

        def reconcile() -> None:
            self._nudged.discard(key)  # from here on, a new event asks for a reconcile of its own
            reconciler.reconcile(*key)

        try:
            await self.queue.run(key[0], reconcile)
        except Exception:
            log.exception("reconcile of %s/%s failed", *key)


def _retry_pending(body: kopf.Body, **_: Any) -> bool:
    status = body.get("status") or {}
    return retry_pending(body.metadata.annotations.get(RETRY_ANNOTATION), status.get("lastHandledRetryAt"))


def _owner_name(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{API_GROUP}/"):
            return str(ref["name"])
    return None


def _deletes_results(spec: Mapping[str, Any], **_: Any) -> bool:
    """Whether the resource, as it is now, asks for its stored results to be deleted with it."""
    artifacts = spec.get("artifacts") or {}
    return isinstance(artifacts, dict) and artifacts.get("deletionPolicy") == "Delete"


def register(registry: kopf.OperatorRegistry, operator: Operator) -> None:
    """Register every handler of the operator into `registry`."""
    resource = (API_GROUP, API_VERSION, PLURAL)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """The kubeconfig of the settings when given (read now, not when a client module was imported)."""
        if operator.settings.kubeconfig:
            os.environ["KUBECONFIG"] = operator.settings.kubeconfig
            return kopf.login_with_kubeconfig(**kwargs)
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # our Events are explicit; info logs stay logs
        # kopf's per-attempt logs ("failed temporarily") stay logs: one Event per retry of an outage
        # would flood the namespace; the reconciler posts one per condition transition instead.
        settings.posting.loggers = False
        settings.execution.max_workers = operator.settings.workers
        # The `labels=` of the child handlers below filter on the client only: kopf would still list
        # and watch every Job and Deployment of the cluster. This selector goes into the list and
        # watch requests themselves, so the API server sends the operator its own children only.
        for group, plural in CHILD_RESOURCES:
            settings.watching.label_selectors[group, plural] = CHILD_SELECTOR
        settings.networking.request_timeout = 60
        settings.watching.server_timeout = 300
        operator.start()

    @kopf.on.cleanup(registry=registry)
    def stop_reconciling(**_: Any) -> None:
        if operator.queue is not None:
            operator.queue.shutdown()

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, registry=registry)
    @kopf.timer(
        *resource,
        interval=operator.settings.resync_seconds,
        initial_delay=operator.settings.resync_seconds,
        registry=registry,
    )
    async def reconcile(name: str, namespace: str | None, retry: int = 0, **_: Any) -> None:
        await operator.reconcile(namespace or "", name, retry)

    # kopf leaves every `optimodel.io/` annotation out of the diff its update handlers see (the prefix
    # of its own progress storage), so a retry request is caught as an event: any event of a resource
    # whose request is not yet in status.lastHandledRetryAt. Once handled, events no longer match.
    @kopf.on.event(*resource, annotations={RETRY_ANNOTATION: kopf.PRESENT}, when=_retry_pending, registry=registry)
    async def retry_requested(name: str, namespace: str | None, **_: Any) -> None:
        operator.nudge(namespace or "", name)

    @kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS, registry=registry)
    @kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS, registry=registry)
    async def child_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        owner = _owner_name(body)
        if owner is not None:
            operator.nudge(namespace or "", owner)

    # A callback, not field=/value=: kopf matches a field filter against the last handled spec too,
    # so switching a Terminating resource to Retain would not release it.
    @kopf.on.delete(*resource, id="delete_artifacts", when=_deletes_results, registry=registry)
    def delete_artifacts(body: kopf.Body, retry: int, **_: Any) -> None:
        """deletionPolicy Delete: remove what this resource stored and no other resource uses.

        kopf keeps the finalizer until this returns; a failure that may pass is retried with a
        growing delay and a Warning Event. Switching the policy to Retain lets the resource go.
        """
        assert operator.deleter is not None
        try:
            operator.deleter.delete(dict(body), operator.settings.retry_seconds, attempt=retry)
        except RetryDeletion as blocked:
            raise kopf.TemporaryError(str(blocked), delay=blocked.delay) from None
        except SpecError as error:  # where the results are is unknown: retrying cannot help
            raise kopf.PermanentError(f"stored results not deleted: {error}") from None

    @kopf.on.delete(*resource, optional=True, registry=registry)
    def forget(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        if operator.reconciler is not None:
            operator.reconciler.forget(namespace or "", name)
        if not _deletes_results(body.get("spec") or {}):  # Delete: the deleter needs it until it is done
            operator.artifacts.forget(str(body.get("metadata", {}).get("uid")))
