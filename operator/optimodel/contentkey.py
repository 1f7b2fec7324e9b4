"""Content keys: where a result lives in the artifact store. Pure layer.

The key covers everything that decides the artifact and its metrics: the source digest, the
digests of the data, the optimization and evaluation spec, and the tool versions. Gates are
left out for a single method (they are re-evaluated on stored metrics) but kept for `auto`,
whose choice of candidate depends on them. The recipe key is what the operator can compute
without downloading anything: it names the Job and points at the content key once known.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from optimodel.spec import Method, OptimizedModelSpec

KEY_SCHEMA = 1


def _digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _recipe(spec: OptimizedModelSpec, *, with_data_uris: bool) -> dict[str, Any]:
    wire = spec.to_wire()
    recipe: dict[str, Any] = {"optimization": wire["optimization"], "evaluation": wire["evaluation"]}
    if not with_data_uris:
        recipe["evaluation"].pop("data", None)
        recipe["optimization"].get("quantization", {}).pop("calibrationData", None)
        recipe["optimization"].get("pruning", {}).pop("trainingData", None)
    if spec.optimization.method == Method.AUTO:
        recipe["gates"] = wire.get("gates", {})
    return recipe


def content_key(
    spec: OptimizedModelSpec, source_sha256: str, data_sha256: dict[str, str], tools: dict[str, str]
) -> str:
    """Key of a result; `data_sha256` maps each data role (evaluation, calibration, training) to its digest."""
    recipe = _recipe(spec, with_data_uris=False)
    return _digest({
        "schema": KEY_SCHEMA,
        "source": source_sha256,
        "data": dict(sorted(data_sha256.items())),
        "recipe": recipe,
        "tools": tools,
    })


def recipe_key(spec: OptimizedModelSpec, source_version: str, image: str) -> str:
    """Key the operator computes from the spec, the source object's version tag and the image."""
    return _digest({
        "schema": KEY_SCHEMA,
        "source": spec.source.uri,
        "sourceVersion": source_version,
        "recipe": _recipe(spec, with_data_uris=True),
        "image": image,
    })
