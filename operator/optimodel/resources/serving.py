"""The serving Deployment and its Service: `optimodel serve` on the artifact that passed. Pure layer.

The artifact's digest sits in the pod template's annotations: a new model changes the template,
so the Deployment rolls (maxUnavailable 0: the old pods serve until the new ones are ready). The
same annotations tell the operator, level-triggered, which artifact is being served.

A pod leaving (rollout, scale-in, deletion) drops no request. Its endpoint turns terminating as soon
as it is deleted, but kube-proxy and other load balancers learn it a moment later: the preStop hook
(kubelet's own `sleep` action, GA in Kubernetes 1.34: the image needs no shell) keeps the server
untouched meanwhile; then SIGTERM makes it unready while it still serves for `DRAIN_DELAY_SECONDS`,
answering `Connection: close` so keep-alive clients move to another pod; then it closes its listener
and finishes what is in flight within `DRAIN_SECONDS`. The grace period, counted from the start of
the preStop hook, covers all three with a margin, so no request is cut by SIGKILL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optimodel.resources.common import (
    ARTIFACT_SHA256_ANNOTATION,
    ARTIFACT_URI_ANNOTATION,
    CONTENT_KEY_ANNOTATION,
    LIVE,
    SCRATCH,
    TRAFFIC_LABEL,
    Owner,
    PodDefaults,
    canary_name,
    container_security,
    credential_env,
    labels,
    metadata,
    pod_security,
    resources,
    scratch_env,
    serving_name,
    shadow_name,
)
from optimodel.spec import Metric, OptimizedModelSpec

CONTAINER = "serve"
# The `app.kubernetes.io/component` of each Deployment's pods: the served model's, and a candidate's
# under strategy shadow or canary.
SERVING, SHADOW, CANARY = "serving", "shadow", "canary"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
PRESTOP_SLEEP_SECONDS = 5  # endpoint removal reaching kube-proxy on every node
DRAIN_DELAY_SECONDS = 2  # unready but serving after SIGTERM: a margin for slower load balancers
DRAIN_SECONDS = 30  # requests in flight once the listener closed
GRACE_MARGIN_SECONDS = 5
TERMINATION_GRACE_SECONDS = PRESTOP_SLEEP_SECONDS + DRAIN_DELAY_SECONDS + DRAIN_SECONDS + GRACE_MARGIN_SECONDS


@dataclass(frozen=True)
class ServedArtifact:
    """The model a Deployment serves; read back from its pod template annotations."""

    key: str
    uri: str
    sha256: str

    def annotations(self) -> dict[str, str]:
        return {
            CONTENT_KEY_ANNOTATION: self.key,
            ARTIFACT_URI_ANNOTATION: self.uri,
            ARTIFACT_SHA256_ANNOTATION: self.sha256,
        }

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> ServedArtifact | None:
        try:
            return cls(
                annotations[CONTENT_KEY_ANNOTATION],
                annotations[ARTIFACT_URI_ANNOTATION],
                annotations[ARTIFACT_SHA256_ANNOTATION],
            )
        except KeyError:
            return None


def serve_args(spec: OptimizedModelSpec, name: str, artifact: ServedArtifact) -> list[str]:
    """Every flag of `optimodel serve` in one place."""
    serving, s3 = spec.serving, spec.artifacts.s3
    args = [
        "--model",
        artifact.uri,
        "--name",
        name,
        "--sha256",
        artifact.sha256,
        "--port",
        str(serving.port),
        "--workers",
        str(serving.workers),
        "--interpreters",
        str(serving.interpreters),
        "--threads",
        str(serving.threads),
        "--max-batch-size",
        str(serving.max_batch_size),
        "--batch-wait-ms",
        f"{serving.batch_wait_ms:g}",
        "--max-request-rows",
        str(serving.max_request_rows),
        "--drain-delay-seconds",
        str(DRAIN_DELAY_SECONDS),
        "--drain-seconds",
        str(DRAIN_SECONDS),
        "--s3-region",
        s3.region,
        "--s3-addressing-style",
        s3.addressing_style,
    ]
    if s3.endpoint:
        args += ["--s3-endpoint", s3.endpoint]
    return args


def child_name(owner: Owner, component: str) -> str:
    """The Deployment (and Service) of each component."""
    names = {SERVING: serving_name, SHADOW: shadow_name, CANARY: canary_name}
    return names[component](owner)


def candidate_component(spec: OptimizedModelSpec) -> str | None:
    """Where a candidate runs during its analysis: SHADOW or CANARY; None under strategy replace."""
    strategy = spec.rollout.strategy
    return SHADOW if strategy == "shadow" else CANARY if strategy == "canary" else None


def mirror_args(spec: OptimizedModelSpec, owner: Owner) -> list[str]:
    """strategies shadow and canary: the serving pods copy live requests to the candidate's Service
    and compare.

    Always there under these strategies, candidate or not (a Service without endpoints refuses at
    once, and those failures are labelled with no candidate): so starting and stopping a candidate
    never changes the serving pods' template, which would roll them.
    """
    component = candidate_component(spec)
    if component is None:
        return []
    compare = "classes" if Metric(spec.evaluation.metric).higher_is_better else "values"
    return [
        "--mirror-url",
        serving_url(owner, spec.serving.port, child_name(owner, component)),
        "--mirror-percent",
        str(spec.rollout.mirror_percent),
        "--mirror-compare",
        compare,
    ]


def scrape_annotations(port: int) -> dict[str, str]:
    """The annotations Prometheus' annotation-based pod discovery reads (each pod answers `/metrics`)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def _probe(path: str, port: int, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}


def build_deployment(
    spec: OptimizedModelSpec, owner: Owner, artifact: ServedArtifact, defaults: PodDefaults
) -> dict[str, Any]:
    """The serving pods: behind the Service, mirroring to a candidate under strategies shadow and
    canary; under canary they carry the traffic label they share with the candidate's pods."""
    args = serve_args(spec, owner.name, artifact) + mirror_args(spec, owner)
    live = candidate_component(spec) == CANARY
    return _deployment(spec, owner, artifact, defaults, SERVING, args, spec.serving.fixed_replicas, live)


def shadow_replicas(spec: OptimizedModelSpec) -> int:
    """As many candidate pods as serving ones (at least one), so mirrored load is spread alike."""
    autoscaling = spec.serving.autoscaling
    replicas = autoscaling.min_replicas if autoscaling is not None else spec.serving.fixed_replicas
    return max(1, replicas or 0)


def canary_replicas(serving: int, percent: int) -> int:
    """Candidate pods beside `serving` served-model pods so that they make up at least `percent` of
    all (at least one): replica ratio behind one Service, as Argo Rollouts does without a mesh. The
    served model's pods stay as many as before, so an abort loses no capacity."""
    return max(1, math.ceil(percent * max(serving, 1) / (100 - percent)))


def build_candidate_deployment(
    spec: OptimizedModelSpec,
    owner: Owner,
    artifact: ServedArtifact,
    defaults: PodDefaults,
    component: str,
    replicas: int,
) -> dict[str, Any]:
    """The candidate's pods during an analysis, scaled to 0 once the verdict is in. Their own
    component label keeps them out of the serving Deployment's selector; under canary the traffic
    label puts them behind the Service `<name>-serving` beside the served model's pods."""
    args = serve_args(spec, owner.name, artifact)
    return _deployment(spec, owner, artifact, defaults, component, args, replicas, component == CANARY)


def _deployment(
    spec: OptimizedModelSpec,
    owner: Owner,
    artifact: ServedArtifact,
    defaults: PodDefaults,
    component: str,
    args: list[str],
    replicas: int | None,
    live: bool,
) -> dict[str, Any]:
    meta = metadata(owner, child_name(owner, component), component)
    port = spec.serving.port
    container = {
        "name": CONTAINER,
        "image": spec.serving.image or defaults.serve_image,
        "imagePullPolicy": defaults.image_pull_policy,
        "command": ["optimodel", "serve"],
        "args": args,
        "env": [*scratch_env(), *credential_env(spec.artifacts.s3.serving_credentials_secret)],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": _probe(READY_PATH, port, period=2, failures=3),
        "livenessProbe": _probe(LIVE_PATH, port, period=10, failures=3),
        "startupProbe": _probe(LIVE_PATH, port, period=2, failures=150),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "resources": resources(spec.serving.resources, defaults.serve_resources),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            # Left out under autoscaling: the HorizontalPodAutoscaler owns the count (server-side apply).
            **({} if replicas is None else {"replicas": replicas}),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": labels(owner, component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": {**meta["labels"], **({TRAFFIC_LABEL: LIVE} if live else {})},
                    "annotations": {**artifact.annotations(), **scrape_annotations(port)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": pod_security(defaults),
                    "containers": [container],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                },
            },
        },
    }


def build_replicas_handover(owner: Owner, replicas: int) -> dict[str, Any]:
    """Only `spec.replicas` of the serving Deployment, applied under a field manager of its own.

    When autoscaling is turned on, the operator stops applying `replicas`; had it been their only
    owner, the API server would reset them to the default of 1 before the autoscaler scales again.
    Applying the current count under another manager first keeps it (Kubernetes' server-side apply
    docs, "Transferring ownership"); the autoscaler's own writes then take the field over.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": serving_name(owner), "namespace": owner.namespace},
        "spec": {"replicas": replicas},
    }


def serving_url(owner: Owner, port: int, service: str | None = None) -> str:
    """Where clients in the cluster reach the model: the Service's DNS name and port."""
    return f"http://{service or serving_name(owner)}.{owner.namespace}.svc:{port}"


def live_selector(owner: Owner) -> dict[str, str]:
    """strategy canary: the pods of both Deployments that carry the traffic label."""
    selector = {key: value for key, value in labels(owner, SERVING).items() if key != "app.kubernetes.io/component"}
    return {**selector, TRAFFIC_LABEL: LIVE}


def build_service(
    spec: OptimizedModelSpec, owner: Owner, component: str = SERVING, live: bool = False
) -> dict[str, Any]:
    """The Service of the serving pods, or the candidate's one the serving pods mirror to.

    `live` (strategy canary, once every serving pod carries the traffic label): the serving Service
    selects by that label, so a canary's pods take their share of the traffic. Before, it selects
    the serving pods by component, which every one of them has, with or without the label: the
    switch in either direction never leaves the Service without the served model's pods.
    """
    port = spec.serving.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, child_name(owner, component), component),
        "spec": {
            "selector": live_selector(owner) if live else labels(owner, component),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
