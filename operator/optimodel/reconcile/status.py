"""The `status` of an OptimizedModel as typed models. Pure layer: pydantic and the report.

The CRD's status schema is generated from these models (`optimodel.crd`), so the API server never
prunes a field the operator writes, and the printer columns point at fields that exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field, ValidationError

from optimodel.reconcile.conditions import Condition
from optimodel.report import GateResult, Wire


class GateRow(Wire):
    name: str = Field(description="The gate, as named in spec.gates.")
    threshold: float = Field(description="The limit from the spec.")
    actual: float = Field(description="The candidate's value.")
    passed: bool = Field(description="Whether the candidate is within the limit.")

    @classmethod
    def of(cls, result: GateResult) -> GateRow:
        return cls(name=result.name, threshold=result.threshold, actual=result.actual, passed=result.passed)


class CandidateStatus(Wire):
    key: str = Field(description="Content key the result is stored under.")
    report_uri: str = Field(description="Where the full report is stored.")
    artifact_uri: str | None = Field(None, description="The optimized .tflite model.")
    sha256: str | None = Field(None, description="SHA-256 of the optimized model.")
    size_bytes: int | None = Field(None, description="Bytes of the optimized model.")
    size: str | None = Field(None, description="The same size for people, e.g. 611.4 kB.")
    source_size_bytes: int = Field(description="Bytes of the source model.")
    size_ratio: float | None = Field(None, description="Optimized bytes / source bytes.")
    method: str = Field(description="quantize, prune, prune-quantize or auto.")
    quantization: str | None = Field(None, description="dynamic, float16 or int8 when quantized.")
    chosen: str | None = Field(None, description="method auto: the candidate that was chosen.")
    tried: int = Field(1, description="How many candidates were evaluated.")
    metric: str | None = Field(None, description="The evaluation metric.")
    value: float | None = Field(None, description="The metric of the optimized model.")
    baseline: float | None = Field(None, description="The metric of the source model.")
    drop: float | None = Field(None, description="How much worse than the source, positive when worse.")
    latency_p95_ms: float | None = Field(None, description="p95 latency of one inference, milliseconds.")
    cache_hit: bool = Field(False, description="Whether the result was reused rather than computed.")
    passed: bool = Field(description="Whether every gate of the current spec passed.")


class AutoscalerStatus(Wire):
    name: str = Field(description="Name of the HorizontalPodAutoscaler (kubectl get hpa NAME).")
    min_replicas: int = Field(description="Fewest pods it scales to.")
    max_replicas: int = Field(description="Most pods it scales to.")
    target_cpu_utilization_percentage: int | None = Field(
        None, alias="targetCPUUtilizationPercentage",
        description="Average CPU utilization it aims at, percent of the pods' CPU request.")


class ServingStatus(Wire):
    deployment: str = Field(description="Name of the serving Deployment.")
    service: str = Field(description="Name of the Service in front of it.")
    url: str | None = Field(
        None, description="In-cluster base URL of the Service, e.g. http://digits-serving.ml.svc:8501.")
    key: str | None = Field(None, description="Content key of the served model.")
    artifact_uri: str | None = Field(None, description="The served .tflite model.")
    sha256: str | None = Field(None, description="SHA-256 of the served model.")
    replicas: int = Field(0, description="Desired serving pods (chosen by the autoscaler when there is one).")
    updated_replicas: int = Field(0, description="Pods running the current template.")
    ready_replicas: int = Field(0, description="Pods passing their readiness probe.")
    available_replicas: int = Field(0, description="Pods available to serve.")
    ready: str = Field("0/0", description="Ready pods / desired pods, for kubectl get.")
    autoscaler: AutoscalerStatus | None = Field(
        None, description="The HorizontalPodAutoscaler that sets replicas (spec.serving.autoscaling).")


class AnalysisStatus(Wire):
    """A shadow or canary analysis (spec.rollout.strategy): live figures while it runs, then its verdict."""

    candidate_sha256: str = Field(description="SHA-256 of the candidate under analysis.")
    phase: str = Field(description="Analyzing, Passed (promoted) or Failed (stopped; the served model stays).")
    started_at: str = Field(description="When the analysis of this candidate started (RFC 3339).")
    finished_at: str | None = Field(None, description="When the verdict was reached.")
    message: str = Field("", description="The figures and, on failure, every threshold that broke.")
    requests: int = Field(0, description="Mirrored requests sent to the candidate (answered or failed).")
    errors: int = Field(0, description="Mirrored requests the candidate failed.")
    error_rate: float | None = Field(None, description="errors / requests.")
    agreement: float | None = Field(
        None, description="Classification: fraction of mirrored rows with the serving model's top-1 class.")
    mean_absolute_difference: float | None = Field(
        None, description="Regression: mean |serving - candidate| over the mirrored outputs.")
    serving_p95_ms: float | None = Field(None, description="p95 inference time of the serving model, ms.")
    candidate_p95_ms: float | None = Field(None, description="p95 inference time of the candidate, ms.")
    p95_latency_ratio: float | None = Field(None, description="candidateP95Ms / servingP95Ms.")
    pods: int = Field(0, description="Serving pods whose figures were read at the last look.")
    step: int | None = Field(None, description="Canary: the step under analysis, from 1 (or the last one judged).")
    steps: int | None = Field(None, description="Canary: how many steps the candidate goes through.")
    traffic_percent: int | None = Field(
        None, description="Canary: the candidate's pods' share of the pods behind the serving Service, percent.")
    step_started_at: str | None = Field(
        None, description="When the current window started (RFC 3339): a canary step, or a retry that reopened it.")
    step_start_requests: int | None = Field(
        None, description="Mirrored requests counted when the window started; it needs minRequests more.")


class UsedResult(Wire):
    artifacts_uri: str = Field(description="spec.artifacts.uri when it was used: the prefix it lives under.")
    recipe_key: str = Field(description="The recipe whose pointer (<artifacts.uri>/recipes/<key>.json) names it.")
    key: str = Field(description="Content key the result is stored under (<artifacts.uri>/<key>/).")


MAX_USED_RESULTS = 50
# `status.observedGeneration` before the operator has judged any generation: the CRD's default for
# `status` (as in Flux's own CRDs), so kstatus reads a new resource as InProgress, never as Current.
NOT_OBSERVED: Final = -1


class FailedJob(Wire):
    """A failed Job of the current recipe, remembered after the Job itself is gone (its TTL, a manual
    delete): without it the operator would see no Job and no result, and run the same failing recipe
    again every TTL. Cleared by a new recipe (a spec or source change) or a retry request."""

    recipe_key: str = Field(description="The recipe the Job ran.")
    job: str = Field(description="The failed Job's name.")
    attempt: int = Field(1, description="Its attempt number (a retry runs the next one).")
    reason: str = Field("", description="Why it failed: the Job's condition reason.")
    error: str = Field("", description="The error its pod reported, or the Job condition's message.")


class OptimizedModelStatus(Wire):
    observed_generation: int = Field(
        NOT_OBSERVED,
        description="metadata.generation this status was computed for; -1 until the operator has judged "
        "the resource, so that a new resource reads as in progress to kstatus (Flux) and Argo CD.",
    )
    phase: str = Field(description="Pending, Optimizing, GatesFailed, RollingOut, Ready or Failed.")
    message: str = Field("", description="One line on the current state; conditions have the detail.")
    recipe_key: str | None = Field(None, description="Key of the recipe: source version + spec + image.")
    job_name: str | None = Field(None, description="The optimization Job of the current recipe.")
    candidate: CandidateStatus | None = Field(None, description="The result for the current spec.")
    gates: list[GateRow] = Field(default_factory=list, description="Every gate of the spec with its verdict.")
    gates_summary: str | None = Field(None, description="Passed gates / gates, e.g. 3/3.")
    serving: ServingStatus | None = Field(None, description="What the serving Deployment serves.")
    analysis: AnalysisStatus | None = Field(
        None, description="The shadow analysis of the current candidate (spec.rollout.strategy shadow).")
    last_handled_retry_at: str | None = Field(
        None,
        description="The last value of the annotation optimodel.io/retry-requested-at the operator handled: "
        "it retried the failed Job, or recorded the request and ignored it because nothing had failed.",
    )
    failed_job: FailedJob | None = Field(
        None, description="The failed Job of the current recipe, kept after the Job is deleted so the "
        "recipe is not run again until the spec changes or a retry is requested.")
    results: list[UsedResult] = Field(
        default_factory=list,
        description=f"Every result this resource has used, oldest first (the last {MAX_USED_RESULTS}): "
        "what spec.artifacts.deletionPolicy Delete removes unless another resource still uses it.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Optimized, GatesPassed, Ready, Reconciling, Stalled."
    )


def previous_status(raw: Mapping[str, Any] | None) -> OptimizedModelStatus | None:
    """The status the operator wrote last, or None when it has written none for this resource.

    The API server fills an unwritten status with the CRD's default (`observedGeneration: -1`);
    that is no status to keep transition times from. A status an older operator wrote that no
    longer parses is recomputed from scratch the same way.
    """
    if not raw or raw.get("observedGeneration", NOT_OBSERVED) == NOT_OBSERVED:
        return None
    try:
        return OptimizedModelStatus.model_validate(raw)
    except ValidationError:
        return None
