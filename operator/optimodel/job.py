"""`optimodel job`: the engine as the entry point of the optimization Job's pod. Command layer.

A result is a success (exit 0) whether its gates passed or not: the operator judges gates on the
stored metrics, and a Job that fails only where retrying can help (storage: 3) or never retries
(bad input: 2, matched by the Job's podFailurePolicy). The termination message carries a short
JSON summary the operator reads from the pod status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from optimodel.errors import ExitCode, OptimodelError, SpecError
from optimodel.progress import LineProgress
from optimodel.spec import parse_spec

SPEC_ENV = "OPTIMODEL_SPEC"
RECIPE_ENV = "OPTIMODEL_RECIPE_KEY"
TERMINATION_ENV = "OPTIMODEL_TERMINATION_LOG"
TERMINATION_LIMIT = 4096  # the kubelet keeps at most 4096 bytes of a termination message


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "job", help="run the optimization inside the Job pod (spec from $OPTIMODEL_SPEC or --spec-file)")
    parser.add_argument("--spec-file", type=Path, help="spec JSON or YAML (default: $OPTIMODEL_SPEC)")
    parser.add_argument("--recipe-key", default=os.environ.get(RECIPE_ENV), help="pointer name the operator reads")
    parser.add_argument("--termination-log", type=Path,
                        default=Path(os.environ.get(TERMINATION_ENV, "/dev/termination-log")))
    parser.set_defaults(handler=job_command)


def _read_spec(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    if args.spec_file:
        text = args.spec_file.read_text()
    elif os.environ.get(SPEC_ENV):
        text = os.environ[SPEC_ENV]
    else:
        raise SpecError(f"no spec: set ${SPEC_ENV} or pass --spec-file")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SpecError("the spec must be an object")
    return data.get("spec", data) if "spec" in data and "source" not in data else data


def _terminate(path: Path, summary: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(summary)[:TERMINATION_LIMIT])
    except OSError as error:
        logging.getLogger("optimodel.job").warning("cannot write the termination message to %s: %s", path, error)


def job_command(args: argparse.Namespace) -> int:
    try:
        spec = parse_spec(_read_spec(args))
        from optimodel.optimize.pipeline import optimize

        report = optimize(spec, LineProgress(sys.stdout), recipe_key=args.recipe_key)
    except OptimodelError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        _terminate(args.termination_log, {"error": str(error), "reason": error.reason})
        return int(error.exit_code)
    summary = {
        "key": report.key,
        "reportUri": f"{spec.artifacts.uri.rstrip('/')}/{report.key}/report.json",
        "artifactUri": report.artifact.uri if report.artifact else None,
        "artifactSha256": report.artifact.sha256 if report.artifact else None,
        "passed": report.passed,
        "cacheHit": report.cache_hit,
    }
    print(json.dumps({"report": report.to_wire()}), flush=True)
    _terminate(args.termination_log, summary)
    return int(ExitCode.PASSED)
