"""The Argo CD health check for OptimizedModel, in Argo CD's Lua runtime, on objects from real runs.

Argo CD's own layout: health.lua, health_test.yaml naming testdata/ files captured from cluster
runs of the operator (tests/cluster/test_gitops_health.py writes them with
OPTIMODEL_CAPTURE_ARGOCD_TESTDATA=1). Run in gopher-lua with only the libraries Argo CD opens for
a custom check, so a script that would fail in Argo CD (say, one calling `string.find`) fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from optimodel.kubectl.health import health
from tests.support.argocd import CHECK, HEALTH_LUA, ROOT, run_health

CASES = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]


def test_every_case_of_health_test_yaml() -> None:
    objects = [yaml.safe_load((CHECK / case["inputPath"]).read_text()) for case in CASES]
    got = run_health(objects)
    assert got == [dict(case["healthStatus"]) for case in CASES]


def test_the_cases_cover_every_health_and_an_old_generation() -> None:
    assert {case["healthStatus"]["status"] for case in CASES} == {"Progressing", "Degraded", "Healthy"}
    objects = [yaml.safe_load((CHECK / case["inputPath"]).read_text()) for case in CASES]
    generations = [(o["metadata"]["generation"], (o.get("status") or {}).get("observedGeneration")) for o in objects]
    assert any(observed == -1 for _, observed in generations), "a new resource (CRD default)"
    assert any(observed is not None and 0 < observed < gen for gen, observed in generations), "an old generation"


def test_the_kubectl_plugin_reads_health_as_argo_cd_does() -> None:
    for case in CASES:
        obj = yaml.safe_load((CHECK / case["inputPath"]).read_text())
        assert health(obj) == (case["healthStatus"]["status"], case["healthStatus"]["message"]), case["inputPath"]


def test_the_runtime_has_no_string_library(tmp_path: Path) -> None:
    """The negative control: the runner restricts what Argo CD restricts."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Healthy", message = string.format("%d", 1)}')
    (error,) = run_health([{"metadata": {}}], script)
    assert "string" in error.get("error", ""), error
    script.write_text('return {status = "Fine"}')
    assert run_health([{}], script) == [{"status": "Unknown", "message": "Lua returned an invalid health status"}]


@pytest.mark.parametrize("snippet", ["argocd-cm.yaml"])
def test_the_argocd_cm_snippet_ships_the_same_script(snippet: str) -> None:
    cm = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd" / snippet).read_text())
    assert cm["data"]["resource.customizations.health.optimodel.io_OptimizedModel"] == HEALTH_LUA.read_text()
