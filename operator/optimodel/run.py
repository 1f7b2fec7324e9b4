"""`optimodel run SPEC.yaml`: the whole optimization locally, no cluster. Command layer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimodel.errors import ExitCode, OptimodelError
from optimodel.progress import progress_for
from optimodel.spec import load_manifest
from optimodel.table import render


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="optimize a model locally as an OptimizedModel manifest describes",
        description="Run the optimization of an OptimizedModel manifest on this machine (file:// and s3:// "
                    "URIs). Exit 0 when every gate passed, 1 when a gate failed, 2 for bad input, "
                    "3 when storage is unreachable or refuses the credentials.")
    parser.add_argument("manifest", type=Path, help="OptimizedModel YAML")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument("--plot", type=Path, help="draw size against metric for every candidate into a PNG")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
        from optimodel.optimize.pipeline import optimize

        progress = progress_for(sys.stderr)
        try:
            report = optimize(manifest.spec, progress)
        finally:
            progress.close()
    except OptimodelError as error:
        print(f"error: {error}", file=sys.stderr)
        return int(error.exit_code)
    if args.plot:
        from optimodel.optimize.plot import plot_candidates

        plot_candidates(report, manifest.spec.gates, args.plot)
    print(json.dumps(report.to_wire(), indent=2) if args.output == "json" else render(report))
    return int(ExitCode.PASSED if report.passed else ExitCode.GATES_FAILED)
