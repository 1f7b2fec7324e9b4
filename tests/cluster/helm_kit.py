"""Helm as the cluster tests run it: the chart with the images `make images` built.

Not a test module: test_chart_install.py and test_chart_story.py import it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from optimodel.devcluster.fixture import DevCluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "optimodel"
HELM = Path(os.environ.get("OPTIMODEL_HELM", ROOT / ".dev" / "bin" / "helm"))


class Helm:
    def __init__(self, cluster: DevCluster, home: Path) -> None:
        self.cluster = cluster
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(
            [str(HELM), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=self.env,
            check=False,
        )
        assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stderr.strip()}"
        return proc.stdout


def image_values(cluster: DevCluster) -> list[str]:
    """`--set` options naming the images the node has, as `.dev/images.yaml` does for a person."""
    options = []
    for role in ("operator", "job", "serve"):
        repository, tag = cluster.images[role].rsplit(":", 1)
        options += ["--set", f"image.{role}.repository={repository}", "--set", f"image.{role}.tag={tag}"]
    return [*options, "--set", "image.operator.pullPolicy=Never", "--set", "image.workloadPullPolicy=Never"]
