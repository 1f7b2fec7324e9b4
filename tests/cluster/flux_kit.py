"""Flux as the cluster tests run it: the real source-controller and kustomize-controller.

Not a test module: test_flux_story.py imports it. `hack/build-flux.sh` (`make k8s-bins`) builds
both controllers from the Go module proxy and links them, with the CRDs their modules ship, into
.dev/bin and .dev/flux/crds. Here they run as host processes, as the API server does: the
kubeconfig through KUBECONFIG, every port set explicitly to a free one (their defaults, :8080 and
:9440, collide with ours and with each other), the artifact storage in a temporary folder.
kustomize-controller downloads each revision over HTTP from source-controller's advertised
address, so both listen on loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from optimodel.devcluster.fixture import DevCluster
from optimodel.devcluster.procs import ProcessRecord, is_alive, spawn, stop
from tests.support.polling import wait_for
from tests.support.s3server import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".dev" / "bin"
CRDS = ROOT / ".dev" / "flux" / "crds"
NAMESPACE = "flux-system"


@dataclass
class Flux:
    """The running controllers, by their logs."""

    logs: dict[str, Path]

    def tail(self, lines: int = 40) -> str:
        """The end of each controller's log, for a failing test's output."""
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for name, path in self.logs.items()
        )


def install_crds(cluster: DevCluster) -> None:
    """Flux's CRDs, as pinned by the build; both controllers watch every source kind, so all of them."""
    crds = sorted(CRDS.glob("*.yaml"))
    assert crds, f"no Flux CRDs in {CRDS}: run `make k8s-bins`"
    args = [arg for crd in crds for arg in ("-f", str(crd))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *args)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *args)


@contextmanager
def _controller(name: str, args: list[str], env: dict[str, str], log: Path) -> Iterator[ProcessRecord]:
    """One controller process for the block, stopped by SIGTERM (SIGKILL after 20 s)."""
    record = spawn(name, [str(BIN / name), *args], log, env)
    try:
        yield record
    finally:
        stop(record, grace=20)


def _ready(health_port: int, record: ProcessRecord) -> bool:
    assert is_alive(record), f"{record.name} exited; see its log"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def running_flux(cluster: DevCluster, requeue_dependency: str = "2s") -> Iterator[Flux]:
    """Both controllers watching every namespace, their objects in flux-system, for the block.

    `requeue_dependency` is how often kustomize-controller looks again at a Kustomization whose
    `dependsOn` is not Ready yet (30 s by default: a test would wait for it).
    """
    install_crds(cluster)
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    work = Path(tempfile.mkdtemp(prefix="optimodel-flux-"))
    (work / "storage").mkdir()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "RUNTIME_NAMESPACE": NAMESPACE}
    storage_port = free_port()
    common = ["--log-encoding=console"]
    ports = {name: (free_port(), free_port()) for name in ("source-controller", "kustomize-controller")}
    argv = {
        name: [*common, f"--metrics-addr=127.0.0.1:{metrics}", f"--health-addr=127.0.0.1:{health}"]
        for name, (metrics, health) in ports.items()
    }
    argv["source-controller"] += [
        f"--storage-path={work / 'storage'}",
        f"--storage-addr=127.0.0.1:{storage_port}",
        f"--storage-adv-addr=127.0.0.1:{storage_port}",
    ]
    argv["kustomize-controller"] += [f"--requeue-dependency={requeue_dependency}"]
    flux = Flux({name: work / f"{name}.log" for name in argv})
    try:
        with ExitStack() as stack:
            for name, args in argv.items():
                record = stack.enter_context(_controller(name, args, env, flux.logs[name]))
                wait_for(f"{name} ready", partial(_ready, ports[name][1], record), timeout=60)
            try:
                yield flux
            finally:
                print(flux.tail())
    finally:
        shutil.rmtree(work, ignore_errors=True)
