"""Reconcile logic: observed state -> desired children + status + Events. Pure layer.

No kopf, no Kubernetes client, no boto3: the controller observes, calls these functions, applies
what they return. May import spec, gates, report, quantity and resources.
"""

from optimodel.reconcile.desired import Desired, candidate_passed, desired_children, gate_results
from optimodel.reconcile.event import Event
from optimodel.reconcile.observed import (
    AutoscalerObservation,
    DeploymentObservation,
    JobObservation,
    Observed,
    Problem,
    ServiceObservation,
)
from optimodel.reconcile.outcome import Outcome, compute_outcome
from optimodel.reconcile.retry import (
    Retry,
    current_job,
    decide_retry,
    remember_failure,
    retry_command,
    retry_pending,
)
from optimodel.reconcile.status import NOT_OBSERVED, OptimizedModelStatus, previous_status

__all__ = [
    "NOT_OBSERVED",
    "remember_failure",
    "AutoscalerObservation",
    "DeploymentObservation",
    "Desired",
    "Event",
    "JobObservation",
    "Observed",
    "OptimizedModelStatus",
    "Outcome",
    "Problem",
    "Retry",
    "ServiceObservation",
    "candidate_passed",
    "compute_outcome",
    "current_job",
    "decide_retry",
    "desired_children",
    "gate_results",
    "previous_status",
    "retry_command",
    "retry_pending",
]
