"""What the controller observed, as plain frozen values. Pure layer.

The controller's adapters fill these from the API server and the artifact store; everything after
that (children to apply, status, Events) is computed from them by pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optimodel.reconcile.analysis import Figures
from optimodel.reconcile.status import AnalysisStatus, OptimizedModelStatus
from optimodel.report import Report
from optimodel.resources import Owner, ServedArtifact
from optimodel.spec import OptimizedModelSpec


@dataclass(frozen=True)
class Problem:
    """Why no Job can run yet: the spec or an object it names is wrong, or storage is unreachable."""

    reason: str
    message: str
    retry: bool  # True when the same spec may work later (storage down, credentials being fixed)


# Why a container cannot start that waiting will not cure: the image is not on the node and cannot
# be pulled, or its configuration names something missing. Other waiting reasons (ContainerCreating,
# PodInitializing) pass by themselves.
IMAGE_PROBLEMS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})
START_PROBLEMS = IMAGE_PROBLEMS | {"CreateContainerConfigError", "CreateContainerError"}


@dataclass(frozen=True)
class PodWaiting:
    """A container of one of the resource's pods that cannot start, as the kubelet reports it."""

    pod: str
    reason: str  # ErrImageNeverPull, ImagePullBackOff, CreateContainerConfigError, ...
    message: str
    image: str

    @property
    def image_missing(self) -> bool:
        """The kubelet cannot get the image."""
        return self.reason in IMAGE_PROBLEMS

    def describe(self) -> str:
        """Our words for it, with the kubelet's in brackets."""
        if self.image_missing:
            what = f"image {self.image} is not present on the node and cannot be pulled"
        else:
            what = "its container cannot be created"
        detail = f"{self.reason}: {self.message[:300]}" if self.message else self.reason
        return f"pod {self.pod}: {what} ({detail})"


@dataclass(frozen=True)
class JobObservation:
    name: str
    recipe_key: str | None = None  # from the Job's annotation: the recipe it runs
    attempt: int = 1  # 1 for the first Job of a recipe, then one more per retry
    retry_token: str | None = None  # the retry request (annotation value) this attempt answers
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    finished: str | None = None  # "Complete" or "Failed" once the Job has that condition
    condition_reason: str = ""  # BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy, ...
    condition_message: str = ""
    termination: dict[str, Any] | None = None  # the JSON termination message of the latest pod
    duration_seconds: float | None = None
    waiting: PodWaiting | None = None  # the latest pod, while the Job runs, when it cannot start


@dataclass(frozen=True)
class DeploymentObservation:
    name: str
    generation: int = 1
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    served: ServedArtifact | None = None
    progress_deadline_exceeded: bool = False
    waiting: PodWaiting | None = None  # a pod of the rollout that cannot start
    total_replicas: int = 0  # status.replicas: pods of every template, old ones included
    owns_replicas: bool = False  # the operator's server-side apply owns spec.replicas (a fixed count)
    controller_uid: str | None = None  # uid of its controlling owner reference, if any
    resource_version: str = ""  # metadata.resourceVersion: any change of the Deployment changes it
    live: bool = False  # its pod template carries the traffic label (strategy canary)

    @property
    def rolled_out(self) -> bool:
        """Every wanted pod runs the current template and is available, and no pod of an older
        template is left (`kubectl rollout status`): an old pod still available while the new one
        cannot start is not a finished rollout."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas >= self.replicas
            and self.available_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
            and self.total_replicas <= self.updated_replicas
        )


@dataclass(frozen=True)
class ServiceObservation:
    """The Service named like the serving Deployment, whoever made it."""

    name: str
    controller_uid: str | None = None  # uid of its controlling owner reference, if any


@dataclass(frozen=True)
class AutoscalerObservation:
    """The HorizontalPodAutoscaler named like the serving Deployment, whoever made it."""

    name: str
    uid: str = ""
    controller_uid: str | None = None  # uid of its controlling owner reference, if any
    min_replicas: int = 1
    max_replicas: int = 1
    target_cpu_utilization: int | None = None


@dataclass(frozen=True)
class Observed:
    owner: Owner
    generation: int
    spec: OptimizedModelSpec | None
    problem: Problem | None = None
    recipe_key: str | None = None
    result: Report | None = None
    report_uri: str | None = None
    job: JobObservation | None = None
    deployment: DeploymentObservation | None = None
    autoscaler: AutoscalerObservation | None = None
    previous: OptimizedModelStatus | None = None
    retry_requested: str | None = None  # the resource's optimodel.io/retry-requested-at annotation
    shadow: DeploymentObservation | None = None  # the shadow candidate's Deployment (strategy shadow)
    canary: DeploymentObservation | None = None  # the canary candidate's Deployment (strategy canary)
    figures: Figures | None = None  # the serving pods' mirrored-traffic figures for the candidate
    analysis: AnalysisStatus | None = None  # as judged at this reconcile (`progressive.analyze`)

    @property
    def candidate_pods(self) -> DeploymentObservation | None:
        """The Deployment a candidate of the current strategy runs in during its analysis."""
        strategy = self.spec.rollout.strategy if self.spec is not None else "replace"
        return self.shadow if strategy == "shadow" else self.canary if strategy == "canary" else None

    @property
    def serving_live(self) -> bool:
        """Every serving pod carries the traffic label: the Service may select by it (strategy canary)."""
        deployment, spec = self.deployment, self.spec
        canary = spec is not None and spec.rollout.strategy == "canary"
        return canary and deployment is not None and deployment.live and deployment.rolled_out
