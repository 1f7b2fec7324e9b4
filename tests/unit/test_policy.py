"""What a tenant's spec may ask of the shared operator (reconcile/policy.py, reconcile/ownership.py)
and the settings that say so: pure code, milliseconds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from optimodel.controller.settings import Settings
from optimodel.reconcile import (
    AutoscalerObservation,
    DeploymentObservation,
    Observed,
    ServiceObservation,
    desired_children,
)
from optimodel.reconcile import reasons as r
from optimodel.reconcile.ownership import in_the_way
from optimodel.reconcile.policy import DEFAULT_S3_ENDPOINTS, Policy, check_spec, is_metadata_host
from optimodel.resources import Owner, PodDefaults, ServedArtifact
from optimodel.spec import parse_spec

JOB, SERVE = "optimodel-optimizer:1", "optimodel-serve:1"
MINIO = Policy(allowed_s3_endpoints=("http://minio.storage:9000", "http://10.1.2.3:*", "https://*.s3.example.com"))


def spec(endpoint: str | None = "http://minio.storage:9000", **changes: Any) -> Any:
    data: dict[str, Any] = {
        "source": {"uri": "s3://models/m.h5"},
        "evaluation": {"data": "s3://data/test.npz"},
        "artifacts": {"uri": "s3://artifacts/m/", "s3": {"credentialsSecret": "s3"}},
    }
    if endpoint is not None:
        data["artifacts"]["s3"]["endpoint"] = endpoint
    for path, value in changes.items():
        where = data
        *parents, last = path.split("__")
        for part in parents:
            where = where.setdefault(part, {})
        where[last] = value
    return parse_spec(data)


def refused(the_spec: Any, policy: Policy = MINIO) -> str | None:
    problem = check_spec(the_spec, policy, JOB, SERVE)
    return problem.reason if problem else None


def test_aws_is_allowed_by_default_and_nothing_else() -> None:
    assert refused(spec(None), Policy()) is None
    assert refused(spec("https://s3.eu-west-1.amazonaws.com"), Policy()) is None
    assert refused(spec("http://minio.storage:9000"), Policy()) == r.ENDPOINT_NOT_ALLOWED
    assert refused(spec("https://s3.amazonaws.com.evil.example"), Policy()) == r.ENDPOINT_NOT_ALLOWED
    assert Policy().allowed_s3_endpoints == DEFAULT_S3_ENDPOINTS


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("http://minio.storage:9000", True),
        ("http://minio.storage:9000/", True),
        ("http://MINIO.storage.:9000", True),
        ("https://minio.storage:9000", False),  # another scheme
        ("http://minio.storage:9001", False),  # another port
        ("http://minio.storage", False),
        ("http://10.1.2.3:31000", True),  # any port of that host
        ("https://tenant.s3.example.com", True),
        ("https://a.b.s3.example.com", False),  # `*` is one label
        ("http://user:pw@minio.storage:9000", False),  # no user info, path or query
        ("http://minio.storage:9000/other", False),
    ],
)
def test_the_allow_list(endpoint: str, allowed: bool) -> None:
    assert (refused(spec(endpoint)) is None) is allowed


@pytest.mark.parametrize(
    "host",
    ["169.254.169.254", "[fd00:ec2::254]", "metadata.google.internal", "METADATA.google.internal.", "2852039166",
     "0xa9fea9fe", "169.254.43518", "[::ffff:169.254.169.254]", "[fe80::1]", "100.100.100.200", "instance-data"],
)
def test_metadata_addresses_are_refused_even_when_listed(host: str) -> None:
    policy = Policy(allowed_s3_endpoints=(f"http://{host}:80", f"http://{host}:*"))
    problem = check_spec(spec(f"http://{host}:80"), policy, JOB, SERVE)
    assert problem is not None and problem.reason == r.ENDPOINT_NOT_ALLOWED
    assert "metadata" in problem.message or "allowed" in problem.message
    assert is_metadata_host(host.strip("[]")) or host.startswith("[")


@pytest.mark.parametrize(
    "field",
    ["source__uri", "evaluation__data", "artifacts__uri", "optimization__quantization__calibrationData"],
)
def test_file_uris_are_refused_in_the_cluster(field: str) -> None:
    problem = check_spec(spec(**{field: "file:///etc"}), MINIO, JOB, SERVE)
    assert problem is not None and problem.reason == r.LOCAL_FILE_NOT_ALLOWED
    assert field.split("__")[-1] in problem.message and not problem.retry


def test_a_resource_needs_its_own_credentials_unless_the_operator_lends_its_identity() -> None:
    anonymous = parse_spec({"source": {"uri": "s3://models/m.h5"}, "evaluation": {"data": "s3://data/t.npz"},
                            "artifacts": {"uri": "s3://artifacts/m/"}})
    assert refused(anonymous, Policy()) == r.CREDENTIALS_REQUIRED
    assert refused(anonymous, Policy(lend_operator_identity=True)) is None


def test_images_and_service_accounts_come_from_allow_lists() -> None:
    assert refused(spec(job__image=JOB)) is None  # the configured image is always allowed
    assert refused(spec(job__image="evil/miner:latest")) == r.IMAGE_NOT_ALLOWED
    assert refused(spec(serving__image="evil/miner:latest")) == r.IMAGE_NOT_ALLOWED
    listed = Policy(allowed_s3_endpoints=MINIO.allowed_s3_endpoints, allowed_job_images=("team/opt:2",))
    assert refused(spec(job__image="team/opt:2"), listed) is None
    assert refused(spec(job__serviceAccountName="admin")) == r.SERVICE_ACCOUNT_NOT_ALLOWED
    trainer = Policy(allowed_s3_endpoints=MINIO.allowed_s3_endpoints, allowed_service_accounts=("trainer",))
    assert refused(spec(job__serviceAccountName="trainer"), trainer) is None


def test_settings_read_the_policy_from_the_environment() -> None:
    settings = Settings.from_env({
        "OPTIMODEL_JOB_IMAGE": JOB,
        "OPTIMODEL_ALLOWED_S3_ENDPOINTS": "http://minio:9000, https://s3.*.amazonaws.com",
        "OPTIMODEL_LEND_OPERATOR_IDENTITY": "true",
        "OPTIMODEL_ALLOWED_SERVICE_ACCOUNTS": "trainer",
        "OPTIMODEL_NAMESPACE_WORKERS": "3",
    })
    assert settings.policy.allowed_s3_endpoints == ("http://minio:9000", "https://s3.*.amazonaws.com")
    assert settings.policy.lend_operator_identity and settings.policy.allowed_service_accounts == ("trainer",)
    assert settings.policy.allowed_job_images == (JOB,)
    assert settings.namespace_workers == 3
    defaults = Settings.from_env({})
    assert defaults.policy.allowed_s3_endpoints == DEFAULT_S3_ENDPOINTS and not defaults.policy.lend_operator_identity
    assert defaults.policy.allowed_service_accounts == ()
    with pytest.raises(SystemExit, match="OPTIMODEL_ALLOWED_S3_ENDPOINTS"):
        Settings.from_env({"OPTIMODEL_ALLOWED_S3_ENDPOINTS": "minio:9000"})


OWNER = Owner(name="api", namespace="ml", uid="uid-1")


def observed(**found: Any) -> Observed:
    return Observed(owner=OWNER, generation=1, spec=spec(), **found)


def test_serving_objects_of_someone_else_are_in_the_way() -> None:
    ours = DeploymentObservation(name="api-serving", controller_uid="uid-1")
    assert in_the_way(observed(deployment=ours), ServiceObservation("api-serving", "uid-1")) is None
    assert in_the_way(observed(), None) is None
    theirs = in_the_way(observed(deployment=ours), ServiceObservation("api-serving", None))
    assert theirs is not None and theirs.reason == r.OBJECT_IN_THE_WAY and "Service api-serving" in theirs.message
    other = in_the_way(observed(deployment=DeploymentObservation(name="api-serving", controller_uid="x")), None)
    assert other is not None and "Deployment api-serving" in other.message
    hpa = AutoscalerObservation(name="api-serving", controller_uid=None)
    assert in_the_way(observed(autoscaler=hpa), None) is None  # not asked for: left alone, as before
    scaled = Observed(owner=OWNER, generation=1, autoscaler=hpa, spec=spec(
        serving__autoscaling={"maxReplicas": 3}, serving__resources={"requests": {"cpu": "1"}}))
    blocked = in_the_way(scaled, None)
    assert blocked is not None and "HorizontalPodAutoscaler api-serving" in blocked.message


def test_nothing_is_applied_over_an_object_in_the_way() -> None:
    """Even a foreign Deployment that carries our annotations is never written to."""
    served = ServedArtifact(key="k", uri="s3://artifacts/m/k/model.tflite", sha256="ab" * 32)
    foreign = DeploymentObservation(name="api-serving", served=served, controller_uid="someone")
    state = observed(deployment=foreign)
    problem = in_the_way(state, None)
    desired = desired_children(replace(state, problem=problem), PodDefaults(job_image=JOB, serve_image=SERVE))
    assert desired.deployment is None and desired.service is None and desired.job is None
