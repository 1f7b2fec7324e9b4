"""Whether the serving objects' names are free for this resource. Pure layer.

The serving Deployment, Service and HorizontalPodAutoscaler are named `<name>-serving` and applied
with forced server-side apply, which would take over any object of that name: a resource named
`api` would adopt someone's `api-serving` Service, and delete it with itself. So an object of that
name that this resource does not control (controller owner reference with its uid) stops the
reconcile with a message naming it, before anything is applied.
"""

from __future__ import annotations

from optimodel.reconcile import reasons as r
from optimodel.reconcile.observed import Observed, Problem, ServiceObservation


def in_the_way(
    observed: Observed, service: ServiceObservation | None, candidate_service: ServiceObservation | None = None
) -> Problem | None:
    """A Problem naming every serving object of this name that is not this resource's, or None.

    A foreign autoscaler matters only when the spec asks for one, and so do a foreign `<name>-shadow`
    or `<name>-canary` Deployment and Service (the strategy's candidate): otherwise they are left alone
    (and never deleted).
    """
    uid, found = observed.owner.uid, []
    deployment, autoscaler, spec = observed.deployment, observed.autoscaler, observed.spec
    if deployment is not None and deployment.controller_uid != uid:
        found.append(f"Deployment {deployment.name}")
    if service is not None and service.controller_uid != uid:
        found.append(f"Service {service.name}")
    if (
        autoscaler is not None
        and autoscaler.controller_uid != uid
        and spec is not None
        and spec.serving.autoscaling is not None
    ):
        found.append(f"HorizontalPodAutoscaler {autoscaler.name}")
    for kind, other in (("Deployment", observed.candidate_pods), ("Service", candidate_service)):
        if other is not None and other.controller_uid != uid:
            found.append(f"{kind} {other.name}")
    if not found:
        return None
    return Problem(
        r.OBJECT_IN_THE_WAY,
        f"{', '.join(found)} in namespace {observed.owner.namespace} already exists and is not controlled by "
        "this OptimizedModel: the operator never adopts or overwrites it; rename the resource or remove it",
        retry=True,
    )
