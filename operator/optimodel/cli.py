"""The `optimodel` command: one entry point, a subcommand per role (run, job, serve, operator, ...).

Each subcommand registers itself and imports its heavy dependencies (TensorFlow, LiteRT, kopf) only
when it runs, so every image can run `optimodel --help` with only its own extras installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from optimodel import __version__

# Modules that provide `add_parser(subparsers)` and import nothing heavy at module level.
SUBCOMMANDS = (
    "optimodel.run",
    "optimodel.job",
    "optimodel.serve.cli",
    "optimodel.controller.cli",
    "optimodel.crd",
    "optimodel.devcluster.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optimodel", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"optimodel {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
