"""Conditions as the Kubernetes API conventions describe them. Pure layer: pydantic and stdlib.

`lastTransitionTime` changes only when a condition's status flips, so a resync that finds nothing
new writes the same status back; the clock is an argument, never read here.
"""

from __future__ import annotations

from pydantic import Field

from optimodel.report import Wire


class Condition(Wire):
    type: str = Field(description="Optimized, GatesPassed, Ready, Reconciling or Stalled.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason; see docs/operator.md for every value.")
    message: str = Field("", description="What happened, and what to change when it is a failure.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int = Field(0, description="metadata.generation this condition was computed for.")


def condition(type_: str, ok: bool | None, reason: str, message: str = "") -> tuple[str, str, str, str]:
    """A condition without its times: (type, status, reason, message)."""
    status = "Unknown" if ok is None else str(ok)
    return type_, status, reason, message


def merge_conditions(
    previous: list[Condition], wanted: list[tuple[str, str, str, str]], generation: int, now: str
) -> list[Condition]:
    """The wanted conditions, keeping each previous `lastTransitionTime` whose status did not flip."""
    before = {item.type: item for item in previous}
    merged = []
    for type_, status, reason, message in wanted:
        old = before.get(type_)
        since = old.last_transition_time if old is not None and old.status == status else now
        merged.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return merged


def find(conditions: list[Condition], type_: str) -> Condition | None:
    return next((item for item in conditions if item.type == type_), None)
