"""Reconcile logic: observed state -> desired children + status + Events. Pure layer.

No kopf, no Kubernetes client, no boto3: the controller observes, calls these functions, applies
what they return. May import spec, gates, report, quantity and resources.
"""

from optimodel.reconcile.desired import Desired, candidate_passed, desired_children, gate_results
from optimodel.reconcile.observed import DeploymentObservation, JobObservation, Observed, Problem
from optimodel.reconcile.outcome import Event, Outcome, compute_outcome
from optimodel.reconcile.status import OptimizedModelStatus

__all__ = [
    "DeploymentObservation",
    "Desired",
    "Event",
    "JobObservation",
    "Observed",
    "OptimizedModelStatus",
    "Outcome",
    "Problem",
    "candidate_passed",
    "compute_outcome",
    "desired_children",
    "gate_results",
]
