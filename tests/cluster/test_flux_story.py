"""GitOps promotion with a real Flux: examples/gitops committed to a real Git repository.

Flux's source-controller and kustomize-controller (v1.9.4, `tests/cluster/flux_kit.py`) read a
repository served over Git's smart HTTP and apply examples/gitops/staging and production as the
example's Kustomizations say (`wait: true`, production `dependsOn: staging`); only the Git URL,
the S3 endpoint and the intervals differ from the example. One story, one changed line per commit:

(a) v1: staging is not Ready while the Job runs and turns Ready only after the OptimizedModel is;
    production applies only then and is Ready with no Job of its own (CacheHit, the same bytes).
(b) a version that fails a gate: the OptimizedModel is Stalled naming the gate, the staging
    Kustomization reports the failed health check, staging keeps serving v1's bytes, production
    is not touched.
(c) a passing version: staging, then production, rolls; production runs no Job.
(d) another reconcile of the same revision changes nothing: Flux's server-side apply and the
    operator never write each other's fields.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.flux_kit import Flux, running_flux
from tests.cluster.operator_kit import Operator, condition, get, jobs, moto_with_tiny_models, secret_yaml
from tests.support.gitserver import GitRepo, served_repo
from tests.support.polling import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitops"
BASE = Path("examples/gitops/base/optimizedmodel.yaml")
STAGING, PRODUCTION = "ml-staging", "ml-production"
V1, UNTRAINED, V2 = (f"s3://models/digits/{v}/model.h5" for v in ("1", "untrained", "2"))

# The tiny digits net, never trained: about 0.1 accuracy, far under the example's minMetric 0.85.
UNTRAINED_MODEL = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Flatten(input_shape=(8, 8, 1)),
                          keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.save(sys.argv[1])
""")


@pytest.fixture(scope="module")
def s3(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The kit's tiny models, and beside them an untrained one that fails the example's gates."""
    folder = tmp_path_factory.mktemp("models")
    with moto_with_tiny_models(dev_cluster, folder) as endpoint:
        subprocess.run([sys.executable, "-c", UNTRAINED_MODEL, str(folder / "untrained.h5")], check=True, timeout=300)
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        client.upload_file(str(folder / "untrained.h5"), "models", "digits/untrained/model.h5")
        yield endpoint


@pytest.fixture(scope="module")
def flux(dev_cluster: DevCluster) -> Iterator[Flux]:
    with running_flux(dev_cluster) as running:
        yield running


def flux_objects(repo_url: str) -> str:
    """The example's GitRepository and Kustomizations, with this repository's URL and test-sized
    intervals: a new commit is seen within 2 s, a failed health check is retried after 5 s."""
    names = ("gitrepository.yaml", "staging.yaml", "production.yaml")
    docs = [yaml.safe_load((EXAMPLE / "flux" / name).read_text()) for name in names]
    docs[0]["spec"].update(url=repo_url, interval="2s")
    for doc in docs[1:]:
        doc["spec"].update(interval="1m", retryInterval="5s", timeout="3m")
    return yaml.safe_dump_all(docs)


def kustomization(cluster: DevCluster, name: str) -> dict[str, Any]:
    return get(cluster, "flux-system", "kustomization", name) or {}


def ready_at(cluster: DevCluster, name: str, commit: str) -> dict[str, Any] | None:
    """The Kustomization once it is Ready with `commit` applied."""
    ks = kustomization(cluster, name)
    applied = ks.get("status", {}).get("lastAppliedRevision", "")
    return ks if condition(ks, "Ready").get("status") == "True" and applied.endswith(commit) else None


def not_ready(cluster: DevCluster, name: str, reason: str) -> dict[str, Any] | None:
    """The Kustomization once its Ready condition is False for `reason`."""
    ready = condition(ks := kustomization(cluster, name), "Ready")
    return ks if (ready.get("status"), ready.get("reason")) == ("False", reason) else None


def handled(cluster: DevCluster, name: str, requested: str, commit: str) -> dict[str, Any] | None:
    """The Kustomization once it has handled the reconcile requested at `requested`, Ready at `commit`."""
    ks = ready_at(cluster, name, commit)
    return ks if ks and ks["status"].get("lastHandledReconcileAt") == requested else None


def model(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    """The OptimizedModel `digits`, with its managedFields (who wrote which field); {} when absent."""
    return get(cluster, namespace, "om", "digits", "--show-managed-fields") or {}


def served_sha(cluster: DevCluster, namespace: str) -> str:
    """The digest the serving Deployment's pods are told to serve (and verify)."""
    deployment = get(cluster, namespace, "deployment", "digits-serving")
    return str(deployment["spec"]["template"]["metadata"]["annotations"]["optimodel.io/artifact-sha256"])


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def promote(repo: GitRepo, uri: str, message: str) -> str:
    """The one line a promotion changes: the model version in the base. Returns the commit."""
    path = repo.worktree / BASE
    path.write_text(re.sub(r"uri: s3://models/\S+", f"uri: {uri}", path.read_text(), count=1))
    assert repo.git("diff", "--numstat") == f"1\t1\t{BASE}", repo.git("diff")
    return repo.commit(message)


def staging_first(cluster: DevCluster, commit: str, production_before: str | None) -> Callable[[], Any]:
    """A probe for staging Ready at `commit` that fails the test if production's model changed
    (from `production_before`, its source URI, or None: absent) before staging was Ready."""

    def probe() -> Any:
        production = model(cluster, PRODUCTION)
        uri = production["spec"]["source"]["uri"] if production else None
        staging = ready_at(cluster, "staging", commit)
        assert uri == production_before or staging, "production changed before staging was Ready"
        return staging

    return probe


def test_flux_promotes_through_staging(
    dev_cluster: DevCluster, s3: str, operator: Operator, flux: Flux, tmp_path: Path
) -> None:
    kubectl = dev_cluster.kubectl
    for namespace in (STAGING, PRODUCTION):
        kubectl("create", "namespace", namespace)
        for name in ("s3-credentials", "s3-read-credentials"):
            secret = yaml.safe_load(secret_yaml(namespace, "test", "test"))
            secret["metadata"]["name"] = name
            kubectl("apply", "-f", "-", input=yaml.safe_dump(secret))
    timings: dict[str, float] = {}
    try:
        with served_repo(tmp_path) as repo:
            shutil.copytree(EXAMPLE, repo.worktree / "examples" / "gitops")
            base = repo.worktree / BASE
            base.write_text(base.read_text().replace("http://s3.storage:9000", s3))
            v1 = repo.commit("digits v1")
            started = time.monotonic()
            kubectl("apply", "-f", "-", input=flux_objects(repo.url))
            _story(dev_cluster, operator, repo, v1, started, timings)
    finally:
        kubectl(
            "delete",
            "-n",
            "flux-system",
            "kustomization/production",
            "kustomization/staging",
            "gitrepository/models",
            "--ignore-not-found",
            "--timeout=60s",
            check=False,
        )
        for namespace in (STAGING, PRODUCTION):
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        print("timings (s):", {k: round(v, 1) for k, v in timings.items()})


def _story(
    cluster: DevCluster, operator: Operator, repo: GitRepo, v1: str, started: float, timings: dict[str, float]
) -> None:
    # (a) v1: staging not Ready while its Job runs; nothing in production yet.
    def staging_job_running() -> list[str]:
        return [j["metadata"]["name"] for j in get(cluster, STAGING, "jobs")["items"] if j["status"].get("active")]

    wait_for("the staging Job running", staging_job_running, timeout=120)
    assert condition(kustomization(cluster, "staging"), "Ready").get("status") != "True"
    assert model(cluster, PRODUCTION) == {}, "production applied before staging was Ready"
    staging_ks = wait_for("staging Ready at v1", staging_first(cluster, v1, None), timeout=240)
    timings["v1 staging Ready"] = time.monotonic() - started
    staging = model(cluster, STAGING)
    om_ready = condition(staging, "Ready")
    assert om_ready["status"] == "True"
    assert stamp(om_ready["lastTransitionTime"]) <= stamp(condition(staging_ks, "Ready")["lastTransitionTime"])
    v1_sha = staging["status"]["serving"]["sha256"]
    assert len(jobs(cluster, STAGING)) == 1

    production_ks = wait_for("production Ready at v1", lambda: ready_at(cluster, "production", v1), timeout=120)
    timings["v1 production Ready"] = time.monotonic() - started
    production = model(cluster, PRODUCTION)
    staging_ready_at = stamp(condition(staging_ks, "Ready")["lastTransitionTime"])
    assert stamp(production["metadata"]["creationTimestamp"]) >= staging_ready_at
    assert condition(production, "Optimized")["reason"] == "CacheHit" and jobs(cluster, PRODUCTION) == []
    assert production["status"]["serving"]["sha256"] == v1_sha == served_sha(cluster, PRODUCTION)
    assert production["status"]["serving"]["ready"] == "2/2"
    assert condition(production_ks, "Ready")["status"] == "True"

    # (b) a version that fails a gate: Stalled, the health check fails, v1 keeps serving.
    started = time.monotonic()
    v2 = promote(repo, UNTRAINED, "digits: an untrained model")
    stalled = wait_for(
        "staging Stalled",
        lambda: (
            (b := model(cluster, STAGING))["status"].get("observedGeneration") == 2
            and condition(b, "Stalled").get("status") == "True"
            and b
        ),
        timeout=240,
    )
    assert "minMetric" in condition(stalled, "Stalled")["message"], condition(stalled, "Stalled")
    failed = wait_for("staging's health check failed", partial(not_ready, cluster, "staging", "HealthCheckFailed"))
    timings["v2 staging HealthCheckFailed"] = time.monotonic() - started
    message = condition(failed, "Ready")["message"]
    # Fail-fast on the Stalled model, not a timeout; Flux names the object, not the gate.
    assert "failed early due to stalled resources" in message, message
    assert f"OptimizedModel/{STAGING}/digits status: 'Failed'" in message, message
    assert stalled["status"]["serving"]["sha256"] == v1_sha == served_sha(cluster, STAGING)
    held = wait_for("production held back", partial(not_ready, cluster, "production", "DependencyNotReady"), 60)
    assert held["status"]["lastAppliedRevision"].endswith(v1) and not held["status"]["lastAppliedRevision"].endswith(v2)
    production = model(cluster, PRODUCTION)
    assert production["metadata"]["generation"] == 1 and production["spec"]["source"]["uri"] == V1
    assert served_sha(cluster, PRODUCTION) == v1_sha and jobs(cluster, PRODUCTION) == []

    # (c) a passing version: staging rolls, then production, which runs no Job.
    started = time.monotonic()
    v3 = promote(repo, V2, "digits v2")
    wait_for("staging Ready at v3", staging_first(cluster, v3, V1), timeout=240)
    timings["v3 staging Ready"] = time.monotonic() - started
    wait_for("production Ready at v3", lambda: ready_at(cluster, "production", v3), timeout=120)
    timings["v3 production Ready"] = time.monotonic() - started
    staging, production = model(cluster, STAGING), model(cluster, PRODUCTION)
    v3_sha = staging["status"]["serving"]["sha256"]
    assert v3_sha != v1_sha and production["status"]["serving"]["sha256"] == v3_sha == served_sha(cluster, PRODUCTION)
    assert condition(production, "Optimized")["reason"] == "CacheHit" and jobs(cluster, PRODUCTION) == []
    assert len(jobs(cluster, STAGING)) == 3

    # (d) the same revision again: nothing changes, nobody fights over a field.
    before = {ns: model(cluster, ns) for ns in (STAGING, PRODUCTION)}
    requested = datetime.now(UTC).isoformat()
    for name in ("staging", "production"):
        cluster.kubectl(
            "annotate",
            "-n",
            "flux-system",
            "--overwrite",
            f"kustomization/{name}",
            f"reconcile.fluxcd.io/requestedAt={requested}",
        )
    for name in ("staging", "production"):
        wait_for(f"{name} reconciled again", partial(handled, cluster, name, requested, v3), timeout=60)
    operator.wait_for_reconciles(2)  # and the operator looked at both again
    for namespace, old in before.items():
        new = model(cluster, namespace)
        assert new["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"], namespace
        assert new["metadata"]["managedFields"] == old["metadata"]["managedFields"], namespace
        spec_managers = {f["manager"] for f in new["metadata"]["managedFields"] if "f:spec" in f.get("fieldsV1", {})}
        status_managers = {f["manager"] for f in new["metadata"]["managedFields"] if f.get("subresource") == "status"}
        assert spec_managers == {"kustomize-controller"}, new["metadata"]["managedFields"]
        assert status_managers and "kustomize-controller" not in status_managers
