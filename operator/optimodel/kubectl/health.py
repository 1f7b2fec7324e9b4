"""The health of an OptimizedModel as GitOps tools read it. Pure layer: stdlib only.

The same rules as the Argo CD check (examples/gitops/argocd/.../health.lua) and kstatus: a
generation the operator has not judged yet is Progressing (a new resource reads
`observedGeneration: -1`); `Stalled` is Degraded; `Ready` is Healthy; anything else Progressing.
`kubectl optimodel get` heads its tree with it, so a person sees what Argo CD and Flux see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

HEALTHY: Final = "Healthy"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"


def find_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def health(model: Mapping[str, Any]) -> tuple[str, str]:
    """(Healthy | Progressing | Degraded, message) of an OptimizedModel as the API returns it."""
    generation = (model.get("metadata") or {}).get("generation")
    status = model.get("status") or {}
    if status.get("observedGeneration") is None or status["observedGeneration"] != generation:
        return PROGRESSING, f"Waiting for the operator to judge generation {generation}"
    stalled = find_condition(status, "Stalled")
    if stalled is not None and stalled.get("status") == "True":
        return DEGRADED, str(stalled.get("message", ""))
    ready = find_condition(status, "Ready")
    if ready is not None and ready.get("status") == "True":
        return HEALTHY, str(ready.get("message", ""))
    reconciling = find_condition(status, "Reconciling")
    if reconciling is not None and reconciling.get("status") == "True":
        return PROGRESSING, str(reconciling.get("message", ""))
    if ready is not None:
        return PROGRESSING, str(ready.get("message", ""))
    return PROGRESSING, "Waiting for the operator's conditions"
