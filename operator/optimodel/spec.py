"""The typed `OptimizedModel` spec: parsed once, frozen, passed around as one object. Pure layer.

The same YAML is applied with kubectl and run with `optimodel run`; the CRD schema is generated
from these models (`optimodel.crd`), so the two cannot drift. Cross-field rules live here as
validators and in the CRD as CEL rules with the same messages.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from optimodel.errors import SpecError
from optimodel.quantity import QUANTITY_PATTERN, parse_bytes

API_GROUP = "optimodel.io"
API_VERSION = "v1alpha1"
KIND: Literal["OptimizedModel"] = "OptimizedModel"
PLURAL = "optimizedmodels"
URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|file://.+)$"

Uri = Annotated[str, Field(pattern=URI_PATTERN, max_length=2048)]


class Model(BaseModel):
    """Spec models: camelCase on the wire, frozen in memory, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid",
        use_enum_values=True,
    )


class Method(StrEnum):
    QUANTIZE = "quantize"
    PRUNE = "prune"
    PRUNE_QUANTIZE = "prune-quantize"
    AUTO = "auto"


class QuantizationType(StrEnum):
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"


class Metric(StrEnum):
    ACCURACY = "accuracy"
    TOP5 = "top5"
    MAE = "mae"
    RMSE = "rmse"

    @property
    def higher_is_better(self) -> bool:
        return self in (Metric.ACCURACY, Metric.TOP5)


class CandidateName(StrEnum):
    """The recipes `method: auto` can try; `prune-int8` means pruning followed by full int8."""

    INT8 = "int8"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    PRUNE_INT8 = "prune-int8"
    PRUNE_DYNAMIC = "prune-dynamic"
    PRUNE_FLOAT16 = "prune-float16"


class Source(Model):
    uri: Uri = Field(description="The trained model: a SavedModel directory, a .keras or a .h5 file "
                                 "(s3://bucket/key or file:///path).")


class Quantization(Model):
    type: QuantizationType = Field(
        QuantizationType.DYNAMIC,
        description="dynamic: int8 weights, float activations; float16: half-precision weights; "
                    "int8: full integer (weights and activations), calibrated on calibrationData.")
    calibration_data: Uri | None = Field(
        None, description=".npz with an array x of representative inputs; required for int8.")
    calibration_samples: int = Field(
        200, ge=1, le=100_000, description="How many calibration inputs the int8 converter sees.")


class Pruning(Model):
    target_sparsity: float = Field(
        0.8, gt=0, lt=1, description="Fraction of weights set to zero, in (0, 1).")
    fine_tune_epochs: int = Field(
        8, ge=1, le=1000, description="Epochs of fine-tuning while the sparsity ramps up and holds.")
    learning_rate: float = Field(
        1e-4, gt=0, le=1, description="Adam learning rate of the fine-tune; a low rate keeps accuracy.")
    batch_size: int = Field(32, ge=1, le=65_536, description="Fine-tuning batch size.")
    training_data: Uri = Field(description=".npz with arrays x and y to fine-tune on.")

    @property
    def ramp_epochs(self) -> int:
        """The sparsity ramps over the first two thirds, then the last third recovers accuracy."""
        return max(1, (2 * self.fine_tune_epochs + 2) // 3)


class Optimization(Model):
    method: Method = Field(Method.QUANTIZE, description="quantize | prune | prune-quantize | auto.")
    quantization: Quantization = Field(
        default_factory=Quantization, description="Post-training quantization (quantize, prune-quantize).")
    pruning: Pruning | None = Field(
        None, description="Magnitude pruning with fine-tuning (prune, prune-quantize, auto).")
    candidates: list[CandidateName] | None = Field(
        None, min_length=1, max_length=6,
        description="method auto: recipes to try in this order; default int8, dynamic, float16 and "
                    "prune-int8 when pruning.trainingData is given.")
    search: Literal["first", "exhaustive"] = Field(
        "first", description="method auto: stop at the first candidate that passes every gate, or try all.")
    budget_seconds: int | None = Field(
        None, ge=1, le=86_400, description="method auto: stop trying new candidates after this many seconds.")

    @model_validator(mode="after")
    def _needs(self) -> Optimization:
        if self.method in (Method.PRUNE, Method.PRUNE_QUANTIZE) and self.pruning is None:
            raise ValueError(f"optimization.pruning (with trainingData) is required for method {self.method}")
        quantizes = self.method in (Method.QUANTIZE, Method.PRUNE_QUANTIZE)
        if quantizes and self.quantization.type == QuantizationType.INT8 and not self.quantization.calibration_data:
            raise ValueError("optimization.quantization.calibrationData is required for type int8")
        if self.method == Method.AUTO:
            for name in self.candidates or []:
                if name.startswith("prune") and self.pruning is None:
                    raise ValueError(f"optimization.pruning is required for candidate {name}")
                if name.endswith("int8") and not self.quantization.calibration_data:
                    raise ValueError(f"optimization.quantization.calibrationData is required for candidate {name}")
        elif self.candidates is not None:
            raise ValueError("optimization.candidates is only for method auto")
        return self

    def auto_candidates(self) -> list[CandidateName]:
        """The candidates of a search, in order of expected size (smallest first)."""
        if self.candidates:
            return list(self.candidates)
        names: list[CandidateName] = []
        if self.pruning is not None and self.quantization.calibration_data:
            names.append(CandidateName.PRUNE_INT8)
        if self.quantization.calibration_data:
            names.append(CandidateName.INT8)
        names += [CandidateName.DYNAMIC, CandidateName.FLOAT16]
        return names


class Latency(Model):
    threads: int = Field(1, ge=1, le=64, description="LiteRT interpreter threads while measuring.")
    runs: int = Field(100, ge=1, le=100_000, description="Timed single-sample inferences.")
    warmup_runs: int = Field(10, ge=0, le=10_000, description="Untimed inferences before timing.")


class Evaluation(Model):
    data: Uri = Field(description=".npz with arrays x (inputs) and y (labels or targets).")
    metric: Metric = Field(
        Metric.ACCURACY, description="accuracy | top5 (higher is better), mae | rmse (lower is better).")
    max_samples: int | None = Field(None, ge=1, le=10_000_000, description="Evaluate on the first N samples only.")
    latency: Latency = Field(default_factory=Latency, description="How latency is measured.")


class Gates(Model):
    max_size_bytes: int | Annotated[str, Field(pattern=QUANTITY_PATTERN)] | None = Field(
        None, description="Largest artifact allowed, bytes or a quantity such as 12Mi.")
    max_size_ratio: float | None = Field(
        None, gt=0, le=1, description="Largest allowed artifact bytes / source bytes, in (0, 1].")
    min_metric: float | None = Field(None, description="Lowest allowed metric (accuracy, top5).")
    max_metric: float | None = Field(None, ge=0, description="Highest allowed metric (mae, rmse).")
    max_metric_drop: float | None = Field(
        None, ge=0, description="How much worse than the source the metric may be (absolute).")
    max_latency_p95_ms: float | None = Field(
        None, gt=0, description="Largest allowed p95 latency of one inference, milliseconds.")

    @property
    def max_size(self) -> int | None:
        return None if self.max_size_bytes is None else parse_bytes(self.max_size_bytes)

    @model_validator(mode="after")
    def _sizes(self) -> Gates:
        if self.max_size_bytes is not None:
            try:
                parse_bytes(self.max_size_bytes)
            except ValueError as error:
                raise ValueError(f"gates.maxSizeBytes: {error}") from error
        return self


class S3Settings(Model):
    endpoint: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        None, description="S3-compatible endpoint URL; empty for AWS.")
    region: str = Field(
        "us-east-1", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Region of the bucket.")
    addressing_style: Literal["path", "virtual", "auto"] = Field(
        "path", description="path-style (most S3-compatible servers) or virtual-hosted.")
    credentials_secret: str | None = Field(
        None, max_length=253,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (operator only; "
                    "locally the usual AWS environment variables are used). Read-write: the operator and "
                    "the optimization Job use it; serving pods never get it.")
    serving_credentials_secret: str | None = Field(
        None, max_length=253,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY that may only read the "
                    "artifacts: the serving pods' credentials. Empty: serving pods get none and read the "
                    "artifacts unsigned (public artifacts) or through their own pod identity.")
    ca_bundle: str | None = Field(None, description="Path to a PEM CA bundle for a private endpoint.")


class Artifacts(Model):
    uri: Uri = Field(description="Prefix under which results are stored, keyed by content.")
    s3: S3Settings = Field(default_factory=S3Settings, description="How to reach S3.")
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain", description="Retain keeps stored results when the resource is deleted. Delete removes "
        "the results and recipe pointers it used, except those another OptimizedModel still uses.")


# Cross-field rules of `serving`: pydantic raises these messages, and `optimodel.crd` attaches the
# same text to its CEL rules, so `kubectl apply` and `optimodel run` say the same thing.
REPLICAS_WITH_AUTOSCALING = (
    "serving.replicas and serving.autoscaling are mutually exclusive: with autoscaling the "
    "HorizontalPodAutoscaler sets the number of pods between minReplicas and maxReplicas; remove serving.replicas"
)
AUTOSCALING_NEEDS_CPU = (
    "serving.resources.requests.cpu (or limits.cpu, which the request defaults to) is required with "
    "serving.autoscaling: targetCPUUtilizationPercentage is a percentage of each pod's CPU request"
)
MAX_BELOW_MIN_REPLICAS = "serving.autoscaling.maxReplicas must be greater than or equal to minReplicas"
DEFAULT_REPLICAS = 1


class Autoscaling(Model):
    """A HorizontalPodAutoscaler (autoscaling/v2) on average CPU utilization of the serving pods."""

    min_replicas: int = Field(
        1, ge=1, le=1000, description="Fewest serving pods; the autoscaler never scales below (nor to zero).")
    max_replicas: int = Field(
        ge=1, le=1000, description="Most serving pods; must be at least minReplicas.")
    target_cpu_utilization_percentage: int = Field(
        70, ge=1, le=100, alias="targetCPUUtilizationPercentage",
        description="Average CPU use of the serving pods the autoscaler aims at, in percent of their CPU "
        "request (serving.resources.requests.cpu). CPU only: memory and request-rate targets are not "
        "supported.")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(MAX_BELOW_MIN_REPLICAS)
        return self


def has_cpu(resources: dict[str, dict[str, int | str]] | None) -> bool:
    """A CPU request, given or defaulted by Kubernetes from the CPU limit."""
    return any("cpu" in (resources or {}).get(kind, {}) for kind in ("requests", "limits"))


class Serving(Model):
    replicas: int | None = Field(
        None, ge=0, le=1000,
        description=f"Serving pods (default {DEFAULT_REPLICAS}; 0 serves nothing). Mutually exclusive with "
        "autoscaling, which sets the number of pods itself.")
    autoscaling: Autoscaling | None = Field(
        None, description="Scale the serving pods with a HorizontalPodAutoscaler on CPU utilization "
        "instead of a fixed replicas count; needs resources.requests.cpu.")
    threads: int = Field(1, ge=1, le=64, description="LiteRT threads per interpreter.")
    workers: int = Field(
        1, ge=1, le=64,
        description="Server processes per pod sharing the port; one answers HTTP on one core at most, "
        "so a pod with N CPUs serves most with N workers.")
    interpreters: int = Field(
        2, ge=1, le=64, description="Interpreters per worker (each runs one call at a time).")
    max_batch_size: int = Field(
        32, ge=1, le=4096, description="Largest batch the server forms from concurrent requests.")
    batch_wait_ms: float = Field(
        2, ge=0, le=1000,
        description="How long a batch may wait for more requests while another call runs; 0 turns batching off.")
    max_request_rows: int = Field(
        1024, ge=1, le=1_048_576,
        description="Rows one request may carry; larger requests get 413. The interpreter's memory grows "
        "with the batch, so this bounds what one request can cost a pod.")
    port: int = Field(8501, ge=1024, le=65_535, description="HTTP port of the server.")
    image: str | None = Field(None, description="Serving image; default from the operator's settings.")
    resources: dict[str, dict[str, int | str]] | None = Field(
        None, description="Container resources (requests, limits) of the serving pods.")

    @model_validator(mode="after")
    def _autoscaling(self) -> Serving:
        if self.autoscaling is not None and self.replicas is not None:
            raise ValueError(REPLICAS_WITH_AUTOSCALING)
        if self.autoscaling is not None and not has_cpu(self.resources):
            raise ValueError(AUTOSCALING_NEEDS_CPU)
        return self

    @property
    def fixed_replicas(self) -> int | None:
        """The pods the Deployment asks for; None when the autoscaler decides."""
        if self.autoscaling is not None:
            return None
        return DEFAULT_REPLICAS if self.replicas is None else self.replicas


# Cross-field rules of `rollout`, shared with the CRD's CEL rules (`optimodel.crd`).
ANALYSIS_NEEDS_SHADOW = (
    "rollout.analysis is for strategies shadow and canary: strategy replace rolls out without one"
)
STEPS_NEED_CANARY = "rollout.steps is for strategy canary: the shares of traffic the candidate takes in turn"
MIN_SECONDS_BELOW_MAX = "rollout.analysis.minSeconds must be less than rollout.analysis.maxSeconds"
STEPS_INCREASING = "rollout.steps must increase: each step gives the candidate a larger share of the traffic"
DEFAULT_CANARY_STEPS: Final = (25, 50)
MIN_AGREEMENT_FOR_CLASSES = (
    "rollout.analysis.minAgreement is for accuracy and top5 (top-1 agreement); mae and rmse use "
    "rollout.analysis.maxMeanAbsoluteDifference"
)
MAX_DIFFERENCE_FOR_VALUES = (
    "rollout.analysis.maxMeanAbsoluteDifference is for mae and rmse; accuracy and top5 use "
    "rollout.analysis.minAgreement"
)


class Analysis(Model):
    """When a candidate has answered enough mirrored live requests like the serving model."""

    min_requests: int = Field(
        100, ge=1, le=10_000_000,
        description="Mirrored requests the candidate must have answered before a verdict (under canary: "
        "before each step's); until then it is neither promoted nor aborted (except by maxSeconds).")
    min_seconds: int = Field(
        0, ge=0, le=86_400,
        description="The least time the candidate is judged for (under canary: each step), even once "
        "minRequests are in: a passing verdict waits for it, a broken threshold does not.")
    max_seconds: int = Field(
        600, ge=10, le=604_800,
        description="The analysis fails when no verdict was reached this many seconds after it started (the "
        "candidate passed its gates; under canary: after each step started): too little traffic, or a "
        "candidate that cannot start or answer.")
    min_agreement: float | None = Field(
        None, ge=0, le=1,
        description="accuracy and top5: lowest allowed fraction of mirrored rows whose top-1 class is "
        "the serving model's.")
    max_mean_absolute_difference: float | None = Field(
        None, ge=0,
        description="mae and rmse: highest allowed mean absolute difference between the candidate's and "
        "the serving model's outputs.")
    max_p95_latency_ratio: float | None = Field(
        None, gt=0, le=1000,
        description="Highest allowed candidate p95 latency / serving p95 latency on the mirrored requests.")
    max_error_rate: float = Field(
        0.01, ge=0, le=1,
        description="Highest allowed fraction of mirrored requests the candidate failed (error status, "
        "timeout, unreadable answer).")

    @model_validator(mode="after")
    def _window(self) -> Analysis:
        if self.min_seconds >= self.max_seconds:
            raise ValueError(MIN_SECONDS_BELOW_MAX)
        return self


class Rollout(Model):
    strategy: Literal["replace", "shadow", "canary"] = Field(
        "replace",
        description="replace: a candidate that passed its gates replaces the served model at once. shadow: "
        "it first runs beside it on a mirrored copy of live traffic and is promoted only when the analysis "
        "holds; otherwise it is stopped and the served model keeps serving. canary: as shadow, and it "
        "also answers a growing share of the live traffic (rollout.steps), judged again at each step.")
    mirror_percent: int = Field(
        100, ge=1, le=100,
        description="strategies shadow and canary: percent of live inference requests the serving pods copy "
        "to the candidate (asynchronously: clients never wait for it).")
    steps: list[Annotated[int, Field(ge=1, le=99)]] | None = Field(
        None, min_length=1, max_length=10,
        description="strategy canary: the percent of the serving pods the candidate's pods make up at each "
        "step, increasing (default 25, 50); after the last step holds, the candidate replaces the served "
        "model.")
    analysis: Analysis | None = Field(
        None, description="strategies shadow and canary: the thresholds of the verdict (defaults when left "
        "out); under canary, each step must hold them on minRequests more mirrored requests.")

    @model_validator(mode="after")
    def _strategy_fields(self) -> Rollout:
        if self.analysis is not None and self.strategy == "replace":
            raise ValueError(ANALYSIS_NEEDS_SHADOW)
        if self.steps is not None and self.strategy != "canary":
            raise ValueError(STEPS_NEED_CANARY)
        if self.steps is not None and any(a >= b for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(STEPS_INCREASING)
        return self

    @property
    def shadow(self) -> Analysis | None:
        """The analysis on mirrored live traffic (strategies shadow and canary), None under replace."""
        if self.strategy == "replace":
            return None
        return self.analysis or Analysis()

    @property
    def canary_steps(self) -> tuple[int, ...]:
        """The candidate's share of the serving pods at each step; empty unless strategy canary."""
        if self.strategy != "canary":
            return ()
        return tuple(self.steps) if self.steps is not None else DEFAULT_CANARY_STEPS


class JobSettings(Model):
    image: str | None = Field(None, description="Optimizer image; default from the operator's settings.")
    resources: dict[str, dict[str, int | str]] | None = Field(
        None, description="Container resources (requests, limits) of the optimization Job.")
    active_deadline_seconds: int = Field(3600, ge=60, le=604_800, description="Job deadline.")
    backoff_limit: int = Field(2, ge=0, le=20, description="Retries of a failed Job pod.")
    service_account_name: str | None = Field(None, description="ServiceAccount of the Job pod.")


class OptimizedModelSpec(Model):
    source: Source = Field(description="Where the trained model is.")
    optimization: Optimization = Field(default_factory=Optimization, description="How to optimize it.")
    evaluation: Evaluation = Field(description="On which data to judge it.")
    gates: Gates = Field(default_factory=Gates, description="What it must pass; every gate given must pass.")
    artifacts: Artifacts = Field(description="Where results are stored.")
    serving: Serving = Field(default_factory=Serving, description="How to serve it once it passed.")
    rollout: Rollout = Field(
        default_factory=Rollout, description="How a candidate that passed its gates replaces the served model.")
    job: JobSettings = Field(default_factory=JobSettings, description="The optimization Job.")

    @model_validator(mode="after")
    def _metric_bounds(self) -> OptimizedModelSpec:
        metric = Metric(self.evaluation.metric)
        if metric.higher_is_better and self.gates.max_metric is not None:
            raise ValueError(f"gates.maxMetric is for error metrics (mae, rmse); {metric} uses gates.minMetric")
        if not metric.higher_is_better and self.gates.min_metric is not None:
            raise ValueError(f"gates.minMetric is for accuracy and top5; {metric} uses gates.maxMetric")
        analysis = self.rollout.analysis
        if analysis is not None and not metric.higher_is_better and analysis.min_agreement is not None:
            raise ValueError(MIN_AGREEMENT_FOR_CLASSES)
        if analysis is not None and metric.higher_is_better and analysis.max_mean_absolute_difference is not None:
            raise ValueError(MAX_DIFFERENCE_FOR_VALUES)
        return self

    def to_wire(self) -> dict[str, Any]:
        """The spec as camelCase JSON, what the Job pod receives."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Metadata(Model):
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)
    name: str = "local"
    namespace: str = "default"


class OptimizedModel(Model):
    """A whole manifest: what `kubectl apply` takes and `optimodel run` reads."""

    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)
    api_version: str = f"{API_GROUP}/{API_VERSION}"
    kind: Literal["OptimizedModel"] = KIND
    metadata: Metadata = Field(default_factory=Metadata)
    spec: OptimizedModelSpec


def _describe(error: ValidationError, prefix: str) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse_spec(data: dict[str, Any]) -> OptimizedModelSpec:
    """Parse the `spec` object of a resource; errors name the field at fault."""
    try:
        return OptimizedModelSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_describe(error, "spec")) from None


def load_manifest(path: Path) -> OptimizedModel:
    """Read an `OptimizedModel` manifest from a YAML file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SpecError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict) or "spec" not in data:
        raise SpecError(f"{path} has no spec: expected an OptimizedModel manifest")
    if data.get("kind", KIND) != KIND:
        raise SpecError(f"{path}: kind is {data.get('kind')!r}, expected {KIND}")
    try:
        return OptimizedModel.model_validate(data)
    except ValidationError as error:
        raise SpecError(_describe(error, "")) from None
