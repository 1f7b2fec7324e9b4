"""The whole optimization of one spec: fetch, reuse or compute, publish the recipe pointer. Optimizer layer.

Shared by `optimodel run` (locally) and `optimodel job` (in the Job pod). This module imports no
TensorFlow: a result already stored under the content key is found and re-judged from the inputs'
digests alone, and `compute` (which loads TensorFlow, about 5 s) is imported only when there is
something to compute.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from optimodel.contentkey import content_key
from optimodel.errors import NotFoundError
from optimodel.gates import all_passed, evaluate_gates
from optimodel.optimize.inputs import fetch, store_for
from optimodel.report import Report
from optimodel.spec import Method, OptimizedModelSpec
from optimodel.storage import join_uri

Progress = Callable[[float, str], None]
TOOLS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert")


def tool_versions() -> dict[str, str]:
    """From the installed distributions' metadata: no import of the tools themselves."""
    return {name: metadata.version(name) for name in TOOLS}


def _reuse(spec: OptimizedModelSpec, report: Report) -> Report:
    """A stored result under today's gates: gates are not part of a single method's key."""
    if spec.optimization.method == Method.AUTO or report.metrics is None or report.artifact is None:
        return report.model_copy(update={"cache_hit": True})
    gates = evaluate_gates(spec.gates, report.metrics, report.artifact.size_bytes)
    return report.model_copy(update={"cache_hit": True, "gates": gates, "passed": all_passed(gates)})


def optimize(spec: OptimizedModelSpec, progress: Progress, recipe_key: str | None = None,
             workdir: Path | None = None) -> Report:
    """Run (or reuse) the optimization a spec describes and publish its result."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="optimodel-", dir=workdir) as scratch:
        work = Path(scratch)
        progress(0.0, f"fetching {spec.source.uri}")
        fetched = fetch(spec, work)
        tools = tool_versions()
        key = content_key(spec, fetched.source.sha256, fetched.data_sha256, tools)
        prefix = join_uri(spec.artifacts.uri, key)
        store = store_for(spec, spec.artifacts.uri)
        try:
            stored = Report.from_json(store.read_bytes(join_uri(prefix, "report.json")))
        except NotFoundError:
            stored = None
        if stored is not None:
            progress(1.0, f"reusing the stored result {key[:12]}")
            report = _reuse(spec, stored)
        else:
            from optimodel.optimize.compute import compute  # TensorFlow loads here, and only here

            report = compute(spec, fetched, key, prefix, tools, work, progress, started)
        if recipe_key:
            pointer = {"key": key, "reportUri": join_uri(prefix, "report.json"),
                       "artifactUri": report.artifact.uri if report.artifact else None}
            store.put_bytes(join_uri(spec.artifacts.uri, "recipes", f"{recipe_key}.json"),
                            json.dumps(pointer).encode())
        return report
