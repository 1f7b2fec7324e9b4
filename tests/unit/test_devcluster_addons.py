"""The local cluster's add-ons as `optimodel cluster up` applies them, checked without a cluster:
the versions the Python code names are the ones the build scripts build, and the object store runs
the way the chart's own pods do (non-root, read-only root, no capabilities)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optimodel.devcluster import nodeconfig, objectstore

ROOT = Path(__file__).resolve().parents[2]


def pinned(script: str, variable: str) -> str:
    match = re.search(rf'^{variable}="\$\{{{variable}:-(v[0-9.]+)\}}"$', (ROOT / "hack" / script).read_text(), re.M)
    assert match, f"{variable} is not pinned in hack/{script}"
    return match.group(1)


@pytest.mark.parametrize("script", ["build-node.sh", "build-images.sh"])
def test_the_add_on_images_are_the_versions_the_scripts_build(script: str) -> None:
    assert pinned(script, "COREDNS_VERSION") == nodeconfig.COREDNS_VERSION
    assert pinned(script, "VERSITYGW_VERSION") == objectstore.VERSITYGW_VERSION


def test_the_object_store_is_service_s3_in_storage_on_port_9000_as_the_example_names() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in objectstore.manifests("AKEY", "SKEY")}
    service = objects[("Service", "s3")]
    assert service["metadata"]["namespace"] == "storage"
    assert {(p["port"], p["nodePort"]) for p in service["spec"]["ports"]} == {(9000, objectstore.NODE_PORT)}
    example = (ROOT / "examples" / "digits" / "optimizedmodel.yaml").read_text()
    assert "endpoint: http://s3.storage:9000" in example


def test_the_object_store_runs_unprivileged_and_keeps_its_keys_in_a_secret() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in objectstore.manifests("AKEY", "SKEY")}
    pod = objects[("Deployment", "s3")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsUser"] == objectstore.USER_ID and pod["securityContext"]["runAsNonRoot"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "AKEY" not in str(pod) and "SKEY" not in str(pod)
    assert objects[("Secret", objectstore.ROOT_SECRET)]["stringData"] == {"access-key": "AKEY", "secret-key": "SKEY"}
