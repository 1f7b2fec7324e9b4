"""Every phase, condition type and reason the operator writes. Pure layer: stdlib only.

One module so that status, Events, docs and tests use the same CamelCase words
(Kubernetes API conventions; Flux keeps its reasons the same way).
"""

from __future__ import annotations

from typing import Final

# Phases: one word for `kubectl get om`; conditions carry the detail.
PENDING: Final = "Pending"
OPTIMIZING: Final = "Optimizing"
GATES_FAILED: Final = "GatesFailed"
ROLLING_OUT: Final = "RollingOut"
READY_PHASE: Final = "Ready"
FAILED: Final = "Failed"
ANALYZING: Final = "Analyzing"  # a shadow candidate is being judged on mirrored live traffic
ANALYSIS_FAILED_PHASE: Final = "AnalysisFailed"  # the shadow analysis stopped the candidate

# `status.analysis.phase`: Analyzing, then one of these verdicts.
ANALYSIS_PASSED: Final = "Passed"
ANALYSIS_FAILED: Final = "Failed"

# Condition types: adjectives or past tense.
OPTIMIZED: Final = "Optimized"
GATES_PASSED: Final = "GatesPassed"
READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"
CONDITION_TYPES: Final = (OPTIMIZED, GATES_PASSED, READY, RECONCILING, STALLED)

# Reasons.
INVALID_SPEC: Final = "InvalidSpec"
SOURCE_NOT_FOUND: Final = "SourceNotFound"
ACCESS_DENIED: Final = "AccessDenied"
STORAGE_UNAVAILABLE: Final = "StorageUnavailable"
CREDENTIALS_MISSING: Final = "CredentialsMissing"
# The operator's policy refused the spec (reconcile/policy.py, docs/security.md).
ENDPOINT_NOT_ALLOWED: Final = "EndpointNotAllowed"
LOCAL_FILE_NOT_ALLOWED: Final = "LocalFileNotAllowed"
CREDENTIALS_REQUIRED: Final = "CredentialsRequired"
IMAGE_NOT_ALLOWED: Final = "ImageNotAllowed"
SERVICE_ACCOUNT_NOT_ALLOWED: Final = "ServiceAccountNotAllowed"
# A Deployment, Service or HorizontalPodAutoscaler of the serving name exists and is not this resource's.
OBJECT_IN_THE_WAY: Final = "ObjectInTheWay"
# A stored result whose report or artifact does not hold what its pointer or report says.
RESULT_INVALID: Final = "ResultInvalid"
JOB_CREATED: Final = "JobCreated"
RETRY_REQUESTED: Final = "RetryRequested"  # Event: a retry request started a new attempt
RETRY_IGNORED: Final = "RetryIgnored"  # Event: a retry request found nothing that failed
JOB_RUNNING: Final = "JobRunning"
JOB_FAILED: Final = "JobFailed"
JOB_DEADLINE_EXCEEDED: Final = "JobDeadlineExceeded"
JOB_OUT_OF_MEMORY: Final = "JobOutOfMemory"
JOB_CANNOT_START: Final = "JobCannotStart"
ROLLOUT_CANNOT_START: Final = "RolloutCannotStart"
RESULT_MISSING: Final = "ResultMissing"
RESULT_STORED: Final = "ResultStored"
CACHE_HIT: Final = "CacheHit"
AWAITING_RESULT: Final = "AwaitingResult"
GATES_PASSED_REASON: Final = "GatesPassed"
GATES_FAILED_REASON: Final = "GatesFailed"
NO_CANDIDATE: Final = "NoCandidate"
ROLLOUT_STARTED: Final = "RolloutStarted"
ROLLOUT_IN_PROGRESS: Final = "RolloutInProgress"
ROLLOUT_STALLED: Final = "RolloutStalled"
SCALED_TO_ZERO: Final = "ScaledToZero"
AVAILABLE: Final = "Available"
SERVING_PREVIOUS: Final = "ServingPrevious"
NOTHING_SERVED: Final = "NothingServed"
SHADOW_ANALYZING: Final = "ShadowAnalyzing"
SHADOW_PASSED: Final = "ShadowAnalysisPassed"  # Event: the candidate is promoted
SHADOW_FAILED: Final = "ShadowAnalysisFailed"
CANARY_ANALYZING: Final = "CanaryAnalyzing"
CANARY_STEP_PASSED: Final = "CanaryStepPassed"  # Event: the candidate takes the next step's share
CANARY_PASSED: Final = "CanaryAnalysisPassed"  # Event: the candidate is promoted
CANARY_FAILED: Final = "CanaryAnalysisFailed"
RECONCILED: Final = "Reconciled"
PROGRESSING: Final = "Progressing"

# Events of deletionPolicy Delete (the resource is going away: no condition, only Events and logs).
ARTIFACTS_DELETED: Final = "ArtifactsDeleted"
ARTIFACTS_SHARED: Final = "ArtifactsShared"
ARTIFACTS_NOT_DELETED: Final = "ArtifactsNotDeleted"
ARTIFACTS_RETAINED: Final = "ArtifactsRetained"

# Reasons the Job reports in its termination message (`optimodel job`), kept as they come.
JOB_REASONS: Final = frozenset(
    {
        "InvalidSpec",
        "InvalidInput",
        "ObjectNotFound",
        "StorageUnavailable",
        "AccessDenied",
        "InternalError",
    }
)
