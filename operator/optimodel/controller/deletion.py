"""`deletionPolicy: Delete`: remove what a deleted resource stored, unless others use it. Controller layer.

Runs from the resource's on.delete handler: kopf keeps its finalizer (and so the resource, in
`Terminating`) until `ArtifactDeleter.delete` returns. What to remove is decided by
`optimodel.reconcile.deletion.plan_deletion` (pure); this module reads what it needs (the resource's
status, its recipe pointers, every other OptimizedModel the operator watches), removes the planned
objects (recipe pointers, then each result's report.json, then the rest of the result) and posts
Events. Failures that may pass (storage unreachable, credentials refused or missing) become
`RetryDeletion` with a growing delay and a Warning Event that says how to give up.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from optimodel.controller.artifacts import MAX_POINTER_BYTES, Artifacts, pointer_uri
from optimodel.controller.kube import CredentialsError, Kube
from optimodel.errors import NotFoundError, ObjectTooLarge, OptimodelError
from optimodel.reconcile import Event, Problem
from optimodel.reconcile import reasons as r
from optimodel.reconcile.deletion import (
    Claims,
    DeletionPlan,
    OtherModel,
    deletion_events,
    plan_deletion,
    retry_delay,
)
from optimodel.reconcile.policy import Policy, check_endpoints
from optimodel.resources import Owner
from optimodel.spec import OptimizedModelSpec, parse_spec
from optimodel.storage import ArtifactStore, join_uri

EventSink = Callable[[dict[str, Any], Event], None]
GIVE_UP_HINT = "set spec.artifacts.deletionPolicy to Retain to delete the resource and keep its results"
log = logging.getLogger("optimodel.deletion")


class RetryDeletion(Exception):
    """Nothing or only part was removed; the same attempt may work after `delay` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class ResultsRetained(OptimodelError):
    """The results can never be reached (the Secret went with its namespace): keep them, let go."""

    reason = r.ARTIFACTS_RETAINED


def _other(body: dict[str, Any]) -> OtherModel | None:
    """What another resource claims; its spec is read loosely (one bad spec must not block deletions)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    artifacts: dict[str, Any] = spec["artifacts"] if isinstance(spec.get("artifacts"), dict) else {}
    uri = artifacts.get("uri")
    if not isinstance(uri, str):
        return None
    return OtherModel(
        ref=f"{meta.get('namespace')}/{meta.get('name')}",
        artifacts_uri=uri,
        claims=Claims.from_status(body.get("status"), uri),
        deleting=bool(meta.get("deletionTimestamp")),
        deletion_policy=str(artifacts.get("deletionPolicy", "Retain")),
    )


class ArtifactDeleter:
    def __init__(
        self,
        kube: Kube,
        artifacts: Artifacts,
        namespaces: tuple[str, ...],
        events: EventSink,
        policy: Policy | None = None,
    ) -> None:
        self.kube, self.artifacts, self.namespaces, self.events = kube, artifacts, namespaces, events
        self.policy = policy or Policy()

    def delete(self, body: dict[str, Any], base_delay: float, attempt: int = 0) -> DeletionPlan | None:
        """Remove what this resource stored and nobody else uses; None when the results were retained.

        Raises `RetryDeletion` when storage or the API cannot be used yet, and `SpecError` when the
        spec does not say where the results are (retrying cannot help).
        """
        meta = body["metadata"]
        owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        spec = parse_spec(body.get("spec") or {})
        try:
            store = self._store(owner, spec)
            plan = self._plan(store, spec, body)
            self._remove(store, spec, plan)
        except ResultsRetained as error:
            self._retained(body, owner, str(error))
            return None
        except (OptimodelError, ApiException) as error:
            delay = retry_delay(base_delay, attempt)
            why = f"Kubernetes API: {error.status} {error.reason}" if isinstance(error, ApiException) else str(error)
            message = f"stored results not deleted yet: {why}; retrying in {delay:.0f} s ({GIVE_UP_HINT})"
            self.events(body, Event("Warning", r.ARTIFACTS_NOT_DELETED, message))
            raise RetryDeletion(message, delay) from None
        self.artifacts.forget(owner.uid)
        for event in deletion_events(spec.artifacts.uri, plan):
            self.events(body, event)
            log.info("%s/%s: %s", owner.namespace, owner.name, event.message)
        return plan

    def _store(self, owner: Owner, spec: OptimizedModelSpec) -> ArtifactStore:
        # The same policy as for reconciles: deleting is a request on the tenant's behalf too, and
        # without a Secret of its own a resource must not delete with the operator's identity.
        refused = check_endpoints(spec, self.policy)
        if refused is None and spec.artifacts.s3.credentials_secret is None and not self.policy.lend_operator_identity:
            refused = Problem(r.CREDENTIALS_REQUIRED, "spec.artifacts.s3.credentialsSecret is not set", retry=False)
        if refused is not None:
            raise ResultsRetained(f"{refused.message}: the stored results under {spec.artifacts.uri} are retained")
        secret = spec.artifacts.s3.credentials_secret
        try:
            credentials = self.kube.credentials(owner.namespace, secret) if secret else None
        except CredentialsError as error:
            remembered = self.artifacts.last_store(spec, owner.uid)
            if remembered is not None:
                return remembered  # e.g. the namespace is being deleted and took the Secret first
            if self.kube.namespace_terminating(owner.namespace):
                raise ResultsRetained(
                    f"{error} and namespace {owner.namespace} is being deleted, so it cannot come back: "
                    f"the stored results under {spec.artifacts.uri} are retained"
                ) from None
            raise
        return self.artifacts.store(spec, credentials, owner.uid)

    def _plan(self, store: ArtifactStore, spec: OptimizedModelSpec, body: dict[str, Any]) -> DeletionPlan:
        own = Claims.from_status(body.get("status"), spec.artifacts.uri)
        pointers = {key: found for key in own.recipe_keys if (found := self._pointer(store, spec, key))}
        uid = body["metadata"]["uid"]
        others = [
            other
            for item in self.kube.list_models(self.namespaces)
            if (item.get("metadata") or {}).get("uid") != uid and (other := _other(item)) is not None
        ]
        return plan_deletion(spec.artifacts.uri, own, others, pointers)

    @staticmethod
    def _pointer(store: ArtifactStore, spec: OptimizedModelSpec, recipe_key: str) -> str | None:
        """The result a recipe pointer names, e.g. one a Job stored after the last status was written."""
        try:
            pointer = json.loads(store.read_bytes(pointer_uri(spec, recipe_key), MAX_POINTER_BYTES))
        except (NotFoundError, ObjectTooLarge, ValueError):
            return None  # absent, or not a pointer a Job wrote (still removed: it names nothing)
        key = pointer.get("key") if isinstance(pointer, dict) else None
        return key if isinstance(key, str) else None

    @staticmethod
    def _remove(store: ArtifactStore, spec: OptimizedModelSpec, plan: DeletionPlan) -> None:
        """Pointers first, then each result's commit marker, then the rest: never a half result in view."""
        uri = spec.artifacts.uri
        steps: list[tuple[Callable[[str], None], str]] = [
            *((store.delete, pointer_uri(spec, key)) for key in plan.recipe_keys),
            *((store.delete, join_uri(uri, key, "report.json")) for key in plan.keys),
            *((store.delete_prefix, join_uri(uri, key)) for key in plan.keys),
        ]
        for remove, target in steps:
            with contextlib.suppress(NotFoundError):  # the bucket is gone: so is what was in it
                remove(target)

    def _retained(self, body: dict[str, Any], owner: Owner, message: str) -> None:
        self.artifacts.forget(owner.uid)
        log.warning("%s/%s: %s", owner.namespace, owner.name, message)
        self.events(body, Event("Warning", r.ARTIFACTS_RETAINED, message))
