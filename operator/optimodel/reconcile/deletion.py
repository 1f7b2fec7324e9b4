"""`deletionPolicy: Delete`: which stored objects to remove, and which to keep. Pure layer.

Results are content-addressed and shared: the same recipe in another namespace reuses the stored
result (a `CacheHit`) and serves the same bytes. So a resource being deleted removes what it
*claims* (the recipe pointers and content keys its status names) only where no other resource still
claims the same location; removing bytes another Deployment serves would break it at its next pod
start. Another resource counts unless it is itself being deleted with `Delete` (it then removes what
it claims itself); one being deleted with `Retain` still counts, since it asked to keep its results.

Only keys that look like keys (64 hex digits) are used, always joined to the current
`spec.artifacts.uri`: what is deleted stays inside `<uri>/<key>/` and `<uri>/recipes/<key>.json`
whatever a status says; earlier results count only when they were stored under that same prefix.
The controller gathers the claims (status, recipe pointers, the other resources) and carries out
the plan: recipe pointers first (no new reader finds a result being removed), then each result's
`report.json` (the commit marker), then the rest of each result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from optimodel.reconcile import reasons as r
from optimodel.reconcile.event import Event

_KEY = re.compile(r"[0-9a-f]{64}")
MAX_RETRY_SECONDS = 600.0


def _same_prefix(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _keys(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(value for value in values if isinstance(value, str) and _KEY.fullmatch(value))


@dataclass(frozen=True)
class Claims:
    """The recipe pointers and results a resource uses, as keys under its artifacts prefix."""

    recipe_keys: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None, artifacts_uri: str) -> Claims:
        """What a status names under `artifacts_uri` (the spec's): its recipe, candidate, served model
        and every result it used before under the same prefix."""
        status = status or {}

        def part(name: str) -> Mapping[str, Any]:
            value = status.get(name)
            return value if isinstance(value, Mapping) else {}

        history = [
            item
            for item in status.get("results") or []
            if isinstance(item, Mapping) and _same_prefix(str(item.get("artifactsUri")), artifacts_uri)
        ]
        return cls(
            recipe_keys=_keys([status.get("recipeKey"), *(item.get("recipeKey") for item in history)]),
            keys=_keys([part("candidate").get("key"), part("serving").get("key"), *(i.get("key") for i in history)]),
        )

    def following(self, pointers: Mapping[str, str]) -> Claims:
        """The same claims plus the results their recipe pointers name (`pointers`: recipe key -> key)."""
        found = [pointers[recipe] for recipe in self.recipe_keys if recipe in pointers]
        return Claims(self.recipe_keys, self.keys | _keys(found))


@dataclass(frozen=True)
class OtherModel:
    """Another OptimizedModel the operator sees: where its results live and what it claims."""

    ref: str  # namespace/name, for messages
    artifacts_uri: str
    claims: Claims
    deleting: bool = False
    deletion_policy: str = "Retain"

    @property
    def holds(self) -> bool:
        """Whether its claims keep shared objects: all but a resource that deletes its own itself."""
        return not (self.deleting and self.deletion_policy == "Delete")


@dataclass(frozen=True)
class Kept:
    what: str  # "recipe pointer" or "result"
    key: str
    users: tuple[str, ...]  # namespace/name of the resources that still claim it


@dataclass(frozen=True)
class DeletionPlan:
    recipe_keys: tuple[str, ...] = ()  # pointers `<uri>/recipes/<key>.json` to remove
    keys: tuple[str, ...] = ()  # results `<uri>/<key>/` to remove
    kept: tuple[Kept, ...] = field(default_factory=tuple)


def _split(
    what: str, mine: frozenset[str], holders: list[OtherModel], theirs: Callable[[Claims], frozenset[str]]
) -> tuple[tuple[str, ...], list[Kept]]:
    removed, kept = [], []
    for key in sorted(mine):
        users = tuple(sorted(other.ref for other in holders if key in theirs(other.claims)))
        if users:
            kept.append(Kept(what, key, users))
        else:
            removed.append(key)
    return tuple(removed), kept


def plan_deletion(
    artifacts_uri: str, own: Claims, others: Iterable[OtherModel], pointers: Mapping[str, str] | None = None
) -> DeletionPlan:
    """What to remove of `own` under `artifacts_uri`, keeping whatever another resource still claims.

    `pointers` maps recipe keys to the result their pointer names (read from the store): a result
    whose Job finished after the last status was written is still removed, and a result is kept
    for a resource that claims its recipe but has not recorded the result yet.
    """
    pointers = pointers or {}
    own = own.following(pointers)
    holders = [
        replace(other, claims=other.claims.following(pointers))
        for other in others
        if other.holds and _same_prefix(other.artifacts_uri, artifacts_uri)
    ]
    recipes, kept_recipes = _split("recipe pointer", own.recipe_keys, holders, lambda c: c.recipe_keys)
    results, kept_results = _split("result", own.keys, holders, lambda c: c.keys)
    return DeletionPlan(recipes, results, tuple(kept_recipes + kept_results))


def retry_delay(base: float, attempt: int, cap: float = MAX_RETRY_SECONDS) -> float:
    """Seconds before the next attempt: `base`, doubled per failed attempt, at most `cap`."""
    return float(min(cap, base * 2 ** min(attempt, 16)))


def _deleted_message(artifacts_uri: str, plan: DeletionPlan) -> str:
    keys = ", ".join(key[:12] for key in plan.keys) or "none"
    return (
        f"deleted {len(plan.keys)} stored result(s) ({keys}) and {len(plan.recipe_keys)} recipe "
        f"pointer(s) under {artifacts_uri}"
    )


def _kept_message(plan: DeletionPlan) -> str:
    parts = [f"{item.what} {item.key[:12]} (used by {', '.join(item.users)})" for item in plan.kept]
    return "kept what other OptimizedModels still use: " + "; ".join(parts)


def deletion_events(artifacts_uri: str, plan: DeletionPlan) -> list[Event]:
    """`ArtifactsDeleted` (unless everything was kept for others), then `ArtifactsShared` when something was."""
    events = []
    if plan.keys or plan.recipe_keys or not plan.kept:
        events.append(Event("Normal", r.ARTIFACTS_DELETED, _deleted_message(artifacts_uri, plan)))
    if plan.kept:
        events.append(Event("Normal", r.ARTIFACTS_SHARED, _kept_message(plan)))
    return events
