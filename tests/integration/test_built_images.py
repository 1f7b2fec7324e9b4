"""The images `make images` built (hack/build-images.sh), read from their archives in .dev/images.

What the Dockerfile promises is checked on the built bytes, not on its text: the user, the
entrypoint and the environment it declares are in each image's configuration, and only the
optimizer image carries TensorFlow.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from optimodel.devcluster.controlplane import default_images_dir
from optimodel.devcluster.fixture import project_images

ROOT = Path(__file__).resolve().parents[2]
IMAGES = project_images(default_images_dir())
pytestmark = pytest.mark.skipif(not IMAGES, reason="no images built: run `make images`")


def archive(ref: str) -> Path:
    return default_images_dir() / (ref.replace(":", "_").replace("/", "_") + ".tar")


def config_of(path: Path) -> dict[str, Any]:
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        return json.load(tar.extractfile(manifest[0]["Config"]))["config"]  # type: ignore[arg-type,no-any-return]


def carries(path: Path, pattern: str) -> bool:
    """True when a file of some layer matches `pattern` (layers are read in order, stopping early)."""
    wanted = re.compile(pattern)
    with tarfile.open(path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer), mode="r|*") as inner:
                if any(wanted.search(member.name) for member in inner):
                    return True
    return False


def dockerfile_env() -> dict[str, str]:
    text = re.sub(r"\\\n\s*", " ", (ROOT / "images" / "Dockerfile").read_text())
    line = next(line for line in text.splitlines() if line.startswith("ENV "))
    return dict(item.split("=", 1) for item in line[4:].split())


@pytest.mark.parametrize("role", ["operator", "job", "serve"])
def test_each_image_runs_as_the_dockerfile_says(role: str) -> None:
    config = config_of(archive(IMAGES[role]))
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["optimodel"]
    assert config["WorkingDir"] == "/scratch"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert {key: env.get(key) for key in dockerfile_env()} == dockerfile_env()


@pytest.mark.parametrize(("role", "has_tensorflow"), [("operator", False), ("serve", False), ("job", True)])
def test_only_the_optimizer_image_carries_tensorflow(role: str, has_tensorflow: bool) -> None:
    assert carries(archive(IMAGES[role]), r"site-packages/tensorflow/__init__\.py$") is has_tensorflow


def test_the_serve_image_carries_litert_and_the_operator_image_neither() -> None:
    assert carries(archive(IMAGES["serve"]), r"site-packages/ai_edge_litert/")
    assert not carries(archive(IMAGES["operator"]), r"site-packages/ai_edge_litert/")
