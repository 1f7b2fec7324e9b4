"""The README's tour of the cluster path, run as a newcomer pastes it.

The code block under "A five-minute tour of the cluster path" runs in bash from the repository
root, every line as written, with one change: its first line starts `make cluster`, and the
cluster here is the session's, so the same `export` points KUBECONFIG at this cluster instead of
`.dev/kubeconfig`. Everything else is the README's: `helm install` with `.dev/images.yaml`, `make
example-data` putting the model and data into the cluster's object store (versitygw behind Service
`s3.storage`) with an account per Secret, `examples/digits/optimizedmodel.yaml` unchanged, the
question asked through the Service URL, and the tightened gate. The block runs in two parts so
that the test can see what the last step (a gate tightened) leaves serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from optimodel.devcluster.fixture import DevCluster
from tests.cluster.helm_kit import HELM, ROOT
from tests.cluster.operator_kit import condition, get
from tests.support.polling import wait_for

pytestmark = pytest.mark.skipif(not HELM.is_file(), reason=f"no helm binary at {HELM}: run `make k8s-bins`")

HEADING = "## A five-minute tour of the cluster path"
FIRST_LINE = "make cluster && export KUBECONFIG=$PWD/.dev/kubeconfig "
LAST_STEP = "\n# 6. "
NAMESPACES = ("ml", "optimodel-system")


def tour() -> tuple[str, str]:
    """The tour's shell block, as the steps up to 5 and step 6."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(HEADING) :]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert block.startswith(FIRST_LINE), "the tour no longer starts with `make cluster && export KUBECONFIG=...`"
    before, last = block.split(LAST_STEP, 1)
    return before, LAST_STEP.lstrip("\n") + last


def run(script: str, cluster: DevCluster, home: Path) -> str:
    first, rest = script.split("\n", 1) if script.startswith(FIRST_LINE) else ("", script)
    export = first.removeprefix("make cluster && ").replace("$PWD/.dev/kubeconfig", str(cluster.kubeconfig))
    if not export:
        export = f"export KUBECONFIG={cluster.kubeconfig} PATH=$PWD/.dev/bin:$PWD/.venv/bin:$PATH"
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}  # fmt: skip
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{export}\n{rest}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"the tour failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture
def tour_cluster(dev_cluster: DevCluster, tmp_path: Path) -> Iterator[DevCluster]:
    """The session's cluster without the tour's namespaces; the tour's release removed after."""
    present = [n for n in NAMESPACES if dev_cluster.kubectl("get", "namespace", n, check=False).returncode == 0]
    if present:
        pytest.skip(f"namespace {', '.join(present)} exists: the tour would change a cluster in use")
    try:
        yield dev_cluster
    finally:
        dev_cluster.kubectl("delete", "optimizedmodel", "--all", "-n", "ml", "--timeout=60s", check=False)
        subprocess.run(
            [str(HELM), f"--kubeconfig={dev_cluster.kubeconfig}", "uninstall", "optimodel", "-n", "optimodel-system",
             "--wait", "--timeout=60s"],
            capture_output=True, timeout=90, check=False,
        )  # fmt: skip
        for name in NAMESPACES:
            dev_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def serving_pods(cluster: DevCluster) -> set[str]:
    pods = get(cluster, "ml", "pods", "-l", "app.kubernetes.io/component=serving")["items"]
    return {
        p["metadata"]["name"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    }


def test_the_readme_tour_runs_as_written(tour_cluster: DevCluster, tmp_path: Path) -> None:
    up_to_five, six = tour()
    started = time.monotonic()
    out = run(up_to_five, tour_cluster, tmp_path / "helm")

    # Step 5 printed the probabilities of the first digit, asked through the Service's URL.
    probabilities = json.loads(out.strip().splitlines()[-1])
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-3, out[-2000:]
    om = get(tour_cluster, "ml", "om", "digits")
    status = om["status"]
    assert condition(om, "Ready")["status"] == "True" and status["serving"]["ready"] == "2/2"
    assert condition(om, "Optimized")["reason"] == "ResultStored"
    # The Job read the model and data with the writer account and stored the result; the serving
    # pods read it with the reader account (their Secret names no other).
    assert status["candidate"]["artifactUri"].startswith("s3://artifacts/digits/")
    serving_digest = status["serving"]["sha256"]
    before = serving_pods(tour_cluster)
    assert len(before) == 2
    print(f"the tour up to step 5 took {time.monotonic() - started:.0f} s")

    # Step 6 tightens a gate: the stored result fails it; the model that passed keeps serving.
    run(six, tour_cluster, tmp_path / "helm")

    def stalled() -> dict[str, Any] | None:
        body = get(tour_cluster, "ml", "om", "digits")
        return body if condition(body, "Stalled").get("status") == "True" else None

    om = wait_for("the tightened gate judged", stalled, timeout=120)
    assert condition(om, "Stalled")["reason"] == "GatesFailed"
    assert "maxSizeRatio" in condition(om, "GatesPassed")["message"]
    assert condition(om, "Ready")["status"] == "False"
    assert om["status"]["serving"]["sha256"] == serving_digest
    assert serving_pods(tour_cluster) == before
