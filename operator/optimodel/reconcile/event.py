"""An Event the operator posts on its OptimizedModel. Pure layer: stdlib only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str  # CamelCase, from `reasons`
    message: str
