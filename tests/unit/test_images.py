"""The container images (`images/Dockerfile`) as far as they can be checked without a Docker engine.

The stages, their user and entrypoint are read from the Dockerfile. What each image would contain
is computed from the metadata of the installed packages (the extra's dependency closure), and the
code each image runs is imported in a subprocess that refuses the packages the image lacks.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"
TENSORFLOW = {"tensorflow", "tf-keras", "keras", "tensorflow-model-optimization"}
LITERT = {"ai-edge-litert"}
TARGETS = {"operator": "operator", "optimizer": "optimizer", "serve": "serve"}  # target -> extra


def _stages() -> dict[str, tuple[str, list[str]]]:
    """Stage name -> (the stage it starts FROM, its instructions)."""
    stages: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text()).splitlines():
        line = line.strip()
        match = re.fullmatch(r"FROM (\S+) AS (\S+)", line)
        if match:
            current = []
            stages[match.group(2)] = (match.group(1), current)
        elif line and not line.startswith("#"):
            current.append(line)
    return stages


def _ancestry(stages: dict[str, tuple[str, list[str]]], name: str) -> list[str]:
    chain = [name]
    while stages[chain[-1]][0] in stages:
        chain.append(stages[chain[-1]][0])
    return chain


def _closure(extra: str) -> set[str]:
    """The distributions `pip install .[extra]` would install, from the installed metadata."""
    seen: set[str] = set()
    todo = [(req, extra) for req in metadata.requires("optimodel") or []]
    while todo:
        raw, wanted = todo.pop()
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate({"extra": wanted}):
            continue
        name = canonicalize_name(req.name)
        for sub in [""] + sorted(req.extras):
            key = f"{name}[{sub}]"
            if key in seen:
                continue
            seen.add(key)
            todo += [(dep, sub) for dep in metadata.requires(req.name) or []]
    return {key.split("[")[0] for key in seen}


def _locked() -> set[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {canonicalize_name(line.split("==")[0]) for line in lines if "==" in line and not line.startswith("#")}


def test_every_target_is_a_non_root_optimodel_image_on_python_311_slim() -> None:
    stages = _stages()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    assert stages["base"][0] == "${PYTHON_IMAGE}"
    for target, extra in TARGETS.items():
        chain = _ancestry(stages, target)
        assert chain[-1] == "base", chain
        instructions = [line for stage in chain for line in stages[stage][1]]
        assert "USER 65532:65532" in instructions
        assert 'ENTRYPOINT ["optimodel"]' in instructions
        # The image is its extra's locked dependencies in one layer, then the project alone in a
        # thin one on top (a code change rebuilds and ships only that).
        assert chain == [target, f"deps-{target}", "venv", "base"], chain
        deps = [line for line in stages[f"deps-{target}"][1] if "pip install" in line]
        assert [" ".join(line.split()) for line in deps] == [
            "RUN --mount=type=cache,target=/pip-cache cd /opt/optimodel/build "
            f"&& python3 extra_requirements.py {extra} > deps.txt "
            "&& PIP_CACHE_DIR=/pip-cache pip install -c requirements.lock -r deps.txt"
        ]
        project = [line for line in stages[target][1] if "pip install" in line]
        assert [" ".join(line.split()) for line in project] == [
            "RUN pip install --no-cache-dir --no-deps /opt/optimodel/build "
            "&& rm -rf /opt/optimodel/build/operator /opt/optimodel/build/build"
        ]


@pytest.mark.parametrize("extra", sorted(set(TARGETS.values())))
def test_the_image_installs_exactly_the_extra_requirements(extra: str, tmp_path: Path) -> None:
    script = ROOT / "images" / "extra_requirements.py"
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    out = subprocess.run([sys.executable, str(script), extra], cwd=tmp_path, capture_output=True, text=True, check=True)
    wanted = {canonicalize_name(Requirement(r).name) for r in metadata.requires("optimodel") or []
              if Requirement(r).marker is None or Requirement(r).marker.evaluate({"extra": extra})}  # fmt: skip
    assert {canonicalize_name(Requirement(line).name) for line in out.stdout.split()} == wanted


@pytest.mark.parametrize(("extra", "absent"), [("operator", TENSORFLOW | LITERT), ("serve", TENSORFLOW)])
def test_operator_and_serve_images_pull_in_no_tensorflow(extra: str, absent: set[str]) -> None:
    closure = _closure(extra)
    assert closure & absent == set()
    if extra == "serve":
        assert closure >= LITERT


@pytest.mark.parametrize("extra", sorted(set(TARGETS.values())))
def test_every_image_dependency_is_locked(extra: str) -> None:
    unlocked = _closure(extra) - _locked() - {"optimodel", "pip", "setuptools", "wheel"}
    assert unlocked == set(), "add them to requirements.lock"


def _foreign_modules(extra: str) -> set[str]:
    """Top-level modules installed here whose distributions the image of `extra` would not have."""
    closure = _closure(extra) | {"optimodel"}
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if not {canonicalize_name(dist) for dist in dists} & closure
    }


IMAGE_PYTHON = """
import importlib.abc, pkgutil, sys

class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {refused!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the image)", name=name)
        return None

sys.meta_path.insert(0, NotInImage())
for package in {packages!r}:
    module = __import__(package, fromlist=["_"])
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if not info.name.endswith("__main__"):
            __import__(info.name)
from optimodel.cli import main
try:
    main([{command!r}, "--help"])
except SystemExit as done:
    sys.exit(done.code)
"""


@pytest.mark.parametrize(
    ("target", "packages"),
    [("operator", ["optimodel.controller"]), ("serve", ["optimodel.serve"])],
)
def test_image_command_runs_with_only_the_image_packages(target: str, packages: list[str]) -> None:
    """`optimodel <target> --help` and the target's modules, with every other distribution refused."""
    refused = _foreign_modules(TARGETS[target])
    assert {"tensorflow", "cryptography"} <= refused  # the dev venv has both; the image has neither
    code = textwrap.dedent(IMAGE_PYTHON).format(refused=refused, packages=packages, command=target)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"usage: optimodel {target}" in proc.stdout
