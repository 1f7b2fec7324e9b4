"""kstatus's reading of a custom resource, as Flux's health checks read it (sigs.k8s.io/cli-utils).

Only the rules for a resource without a built-in reader (FACTS.md, "GitOps engines"), so that unit
tests judge computed statuses and cluster tests judge stored ones the way Flux would.
"""

from __future__ import annotations

from typing import Any


def kstatus(generation: int, status: dict[str, Any] | None) -> str:
    """kstatus's reading of a custom resource (sigs.k8s.io/cli-utils, see FACTS: GitOps engines)."""
    status = status or {}
    if "observedGeneration" in status and status["observedGeneration"] != generation:
        return "InProgress"
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    if conditions.get("Reconciling") == "True":
        return "InProgress"
    if conditions.get("Stalled") == "True":
        return "Failed"
    if "Ready" in conditions:
        return "Current" if conditions["Ready"] == "True" else "InProgress"
    return "Current"
