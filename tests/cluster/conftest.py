"""Fixtures for tests against a real local control plane (see docs/devcluster.md).

`dev_cluster` (session scope) is the stable interface for every test in tests/cluster:

    dev_cluster.kubeconfig: Path         admin kubeconfig (system:masters)
    dev_cluster.host_ip: str             the host's address on the node's link: pods reach test servers here
    dev_cluster.api_port: int            API server port (on 127.0.0.1 and host_ip)
    dev_cluster.state_dir: Path          logs/ (components; audit.log: requests of AUDITED_USER only),
                                         node/pod-logs/NS_POD_UID/CONTAINER/N.log (pods)
    dev_cluster.images: dict[str, str]   the project's images on the node: operator, job, serve
    dev_cluster.kubectl(*args, input=None, check=True) -> CompletedProcess[str]   kubectl v1.36, admin
    dev_cluster.user_kubeconfig(user, groups=()) -> Path     act as someone with fewer rights
    dev_cluster.service_account_token(namespace, name) -> str     TokenRequest API
    dev_cluster.api_client() -> kubernetes.client.ApiClient       admin client

It starts a fresh cluster in a temporary directory (free ports, a node network of its own, so
parallel sessions do not collide) and stops it at the end of the session; with OPTIMODEL_TEST_KUBECONFIG
set it uses that cluster instead (e.g. `.dev/kubeconfig` of `make cluster`) and leaves it running.
OPTIMODEL_KEEP_CLUSTER_STATE=1 keeps the temporary state directory (logs) for debugging.
Pods run on a real node (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS) from images the node
has: the project's (`make images`) with `imagePullPolicy: Never` or `IfNotPresent`; there is no
registry. Every test here is marked `cluster`.

`namespace` (function scope) is a fresh namespace with its default ServiceAccount, deleted
(without waiting) after the test. `s3` (module scope) is moto on the host's address with the tiny
models of `operator_kit`, empty otherwise, and `operator` (module scope) the operator with the
kit's settings: a module that needs others defines its own fixture of the same name. `clients`
(function scope) holds the `traffic_kit.Clients` a test starts and stops them after it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from optimodel.devcluster.controlplane import ClusterError
from optimodel.devcluster.fixture import DevCluster, from_kubeconfig, reused_kubeconfig, start_throwaway, stop
from tests.cluster.operator_kit import Operator, moto_with_tiny_models, running_operator
from tests.cluster.traffic_kit import Clients

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `cluster`."""
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def dev_cluster() -> Iterator[DevCluster]:
    """A running cluster for the whole session (see the module docstring)."""
    reused = reused_kubeconfig()
    if reused is not None:
        yield from_kubeconfig(reused)
        return
    try:
        cluster = start_throwaway()
    except ClusterError as err:
        pytest.fail(f"cannot start the local cluster: {err}")
    try:
        yield cluster
    finally:
        stop(cluster, remove_state=not os.environ.get("OPTIMODEL_KEEP_CLUSTER_STATE"))


@pytest.fixture
def namespace(dev_cluster: DevCluster) -> Iterator[str]:
    """A namespace of this test's own."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    dev_cluster.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 20
    while dev_cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name}"
        time.sleep(0.1)
    yield name
    dev_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def s3(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto with the tiny models, one per test module: a module never finds another's results."""
    with moto_with_tiny_models(dev_cluster, tmp_path_factory.mktemp("models")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def operator(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """`optimodel operator -A` with the kit's settings, for the module."""
    with running_operator(dev_cluster, tmp_path_factory.mktemp("operator") / "operator.log") as runner:
        yield runner


@pytest.fixture
def clients(dev_cluster: DevCluster) -> Iterator[list[Clients]]:
    """Clients calling the model that a test starts (`traffic_kit.Clients`); stopped after it."""
    started: list[Clients] = []
    yield started
    for client in started:
        client.stop()
