"""Argo CD's health check for OptimizedModel, run the way Argo CD runs it (gopher-lua, its libraries).

The runner (hack/argocd-health, built from the Go module proxy by hack/build-argocd-health.sh into
~/.cache/optimodel) is built on first use; the unit tests run it on the captured testdata and the
cluster tests on live objects.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "examples" / "gitops" / "argocd" / "resource_customizations" / "optimodel.io" / "OptimizedModel"
HEALTH_LUA = CHECK / "health.lua"


@cache
def runner() -> Path:
    """The argocd-health binary, built if missing (a cached build takes a few milliseconds)."""
    built = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-argocd-health.sh")], check=True, capture_output=True, text=True
    )
    return Path(built.stdout.strip())


def run_health(objects: Sequence[Mapping[str, Any]], script: Path = HEALTH_LUA) -> list[dict[str, str]]:
    """What Argo CD says of each object: {"status", "message"} or {"error"}."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, obj in enumerate(objects):
            path = Path(folder) / f"{i}.json"
            path.write_text(json.dumps(obj))
            paths.append(str(path))
        out = subprocess.run([str(runner()), str(script), *paths], check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines()]
