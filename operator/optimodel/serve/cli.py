"""`optimodel serve`: flags, their OPTIMODEL_* environment fallbacks, and the handler. Serve layer, CLI.

May import argparse, the stdlib, `optimodel.spec` (S3Settings) and `optimodel.serve.app`, the latter
only when the command runs: the main CLI registers every subcommand in every image, and the
operator image has no LiteRT. Every flag
has an environment variable that the operator's Deployment may set instead (a flag wins over its
variable); S3 credentials come only from the usual AWS_* variables, never from flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimodel.spec import S3Settings

if TYPE_CHECKING:
    from optimodel.serve.app import ServerSettings

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _percent(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not a percentage from 1 to 100")
    return value


def _compare(text: str) -> str:
    if text not in ("classes", "values"):
        raise argparse.ArgumentTypeError(f"{text!r} is neither classes nor values")
    return text


def _sha256(text: str) -> str:
    if not _SHA256.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a sha256 hex digest (64 hex digits)")
    return text.lower()


def _flag(
    parser: argparse.ArgumentParser,
    flag: str,
    env: str,
    default: Any = None,
    kind: Callable[[str], Any] = str,
    help: str = "",
) -> None:
    """A flag whose default comes from `env`, then `default`; the help names both."""
    raw = _env(env)  # a string default goes through `kind` like a flag, so argparse reports bad values
    value = raw if raw is not None else default
    shown = f" (env {env}; default {default})" if default is not None else f" (env {env})"
    parser.add_argument(flag, default=value, type=kind, help=help + shown)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `serve` on the main CLI's subparsers; the handler is stored as `handler`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve a .tflite model over TF Serving REST (v1) and the open inference protocol (v2)",
        description="LiteRT model server. Verifies the artifact's sha256 before serving.",
    )
    _flag(parser, "--model", "OPTIMODEL_MODEL_URI", help="s3:// or file:// URI of the .tflite file")
    _flag(parser, "--name", "OPTIMODEL_MODEL_NAME", help="model name in the URL paths")
    _flag(
        parser,
        "--sha256",
        "OPTIMODEL_MODEL_SHA256",
        kind=_sha256,
        help="expected sha256 of the artifact; a mismatch keeps the server unready",
    )
    _flag(parser, "--host", "OPTIMODEL_HOST", "0.0.0.0", help="address to listen on")
    _flag(parser, "--port", "OPTIMODEL_PORT", 8501, _positive, help="HTTP port")
    _flag(
        parser,
        "--workers",
        "OPTIMODEL_WORKERS",
        1,
        _positive,
        help="server processes sharing the port (SO_REUSEPORT), each with its own interpreter pool",
    )
    _flag(
        parser,
        "--interpreters",
        "OPTIMODEL_INTERPRETERS",
        2,
        _positive,
        help="interpreters in the pool (calls run in parallel)",
    )
    _flag(parser, "--threads", "OPTIMODEL_THREADS", 1, _positive, help="LiteRT threads per interpreter")
    _flag(
        parser,
        "--max-batch-size",
        "OPTIMODEL_MAX_BATCH_SIZE",
        32,
        _positive,
        help="rows at most in one dynamic batch",
    )
    _flag(
        parser,
        "--batch-wait-ms",
        "OPTIMODEL_BATCH_WAIT_MS",
        0.0,
        _non_negative,
        help="how long a request waits for others to batch with; 0 turns dynamic batching off",
    )
    _flag(
        parser,
        "--max-body-bytes",
        "OPTIMODEL_MAX_BODY_BYTES",
        DEFAULT_MAX_BODY_BYTES,
        _positive,
        help="larger request bodies get 413",
    )
    _flag(
        parser,
        "--max-request-rows",
        "OPTIMODEL_MAX_REQUEST_ROWS",
        1024,
        _positive,
        help="rows one request may carry; more get 413 (the interpreter's memory grows with the batch)",
    )
    _flag(
        parser,
        "--max-in-flight",
        "OPTIMODEL_MAX_IN_FLIGHT",
        64,
        _positive,
        help="inference requests a worker holds at once; more get 429 with Retry-After",
    )
    _flag(
        parser,
        "--read-timeout-seconds",
        "OPTIMODEL_READ_TIMEOUT_SECONDS",
        30.0,
        _non_negative,
        help="a request body that takes longer to arrive gets 408",
    )
    _flag(
        parser,
        "--keepalive-timeout-seconds",
        "OPTIMODEL_KEEPALIVE_TIMEOUT_SECONDS",
        30.0,
        _non_negative,
        help="idle keep-alive connections are closed after this",
    )
    _flag(
        parser,
        "--drain-delay-seconds",
        "OPTIMODEL_DRAIN_DELAY_SECONDS",
        0.0,
        _non_negative,
        help="on SIGTERM, how long the server stays unready but still accepting and serving (while load "
        "balancers take it out of rotation) before it closes its listener",
    )
    _flag(
        parser,
        "--drain-seconds",
        "OPTIMODEL_DRAIN_SECONDS",
        30.0,
        _non_negative,
        help="after the listener closed, how long requests in flight may take to finish",
    )
    _flag(
        parser,
        "--download-dir",
        "OPTIMODEL_DOWNLOAD_DIR",
        tempfile.gettempdir(),
        help="where the artifact is downloaded",
    )
    _flag(parser, "--s3-endpoint", "OPTIMODEL_S3_ENDPOINT", help="S3-compatible endpoint URL; empty for AWS")
    _flag(parser, "--s3-region", "OPTIMODEL_S3_REGION", "us-east-1", help="S3 region")
    _flag(
        parser, "--s3-addressing-style", "OPTIMODEL_S3_ADDRESSING_STYLE", "path", help="path, virtual or auto"
    )
    _flag(parser, "--s3-ca-bundle", "OPTIMODEL_S3_CA_BUNDLE", help="PEM CA bundle of a private endpoint")
    _flag(
        parser,
        "--mirror-url",
        "OPTIMODEL_MIRROR_URL",
        help="base URL of a shadow candidate server: sampled inference requests are copied to it after "
        "their answer, its answers compared and the figures exported in /metrics (optimodel_shadow_*)",
    )
    _flag(
        parser,
        "--mirror-percent",
        "OPTIMODEL_MIRROR_PERCENT",
        100,
        _percent,
        help="percent of inference requests copied to --mirror-url",
    )
    _flag(
        parser,
        "--mirror-compare",
        "OPTIMODEL_MIRROR_COMPARE",
        "classes",
        _compare,
        help="classes: top-1 agreement of the first output; values: mean absolute difference of every output",
    )
    _flag(
        parser,
        "--mirror-timeout-seconds",
        "OPTIMODEL_MIRROR_TIMEOUT_SECONDS",
        5.0,
        _non_negative,
        help="a mirrored request the candidate has not answered in this time counts as its error",
    )
    _flag(
        parser,
        "--mirror-pause-seconds",
        "OPTIMODEL_MIRROR_PAUSE_SECONDS",
        1.0,
        _non_negative,
        help="after the candidate could not be reached, how long no request is copied",
    )
    _flag(parser, "--log-level", "OPTIMODEL_LOG_LEVEL", "INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.set_defaults(handler=run)
    return parser


def settings_from(args: argparse.Namespace) -> ServerSettings:
    """The typed settings; a bad value here is a usage error."""
    from optimodel.serve.app import ServerSettings
    from optimodel.serve.loader import LoadSettings
    from optimodel.serve.mirror import MirrorSettings

    s3 = S3Settings(
        credentials_secret=None,
        endpoint=args.s3_endpoint or None,
        region=args.s3_region,
        addressing_style=args.s3_addressing_style,
        ca_bundle=args.s3_ca_bundle or None,
    )
    return ServerSettings(
        name=args.name,
        host=args.host,
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        drain_seconds=args.drain_seconds,
        drain_delay_seconds=args.drain_delay_seconds,
        max_request_rows=args.max_request_rows,
        max_in_flight=args.max_in_flight,
        read_timeout_seconds=args.read_timeout_seconds,
        keepalive_timeout_seconds=args.keepalive_timeout_seconds,
        workers=args.workers,
        mirror=(
            MirrorSettings(
                url=args.mirror_url,
                percent=args.mirror_percent,
                compare=args.mirror_compare,
                timeout_seconds=args.mirror_timeout_seconds,
                pause_seconds=args.mirror_pause_seconds,
            )
            if args.mirror_url
            else None
        ),
        load=LoadSettings(
            uri=args.model,
            sha256=args.sha256,
            interpreters=args.interpreters,
            threads=args.threads,
            s3=s3,
            directory=Path(args.download_dir),
        ),
    )


def run(args: argparse.Namespace) -> int:
    """The `serve` handler: blocks until SIGTERM, returns the exit code."""
    missing = [flag for flag, value in (("--model", args.model), ("--name", args.name)) if not value]
    if missing:
        raise SystemExit(
            f"optimodel serve: {' and '.join(missing)} required (or OPTIMODEL_MODEL_URI / "
            "OPTIMODEL_MODEL_NAME)"
        )
    from optimodel.serve.app import run as run_server
    from optimodel.serve.workers import LOG_FORMAT, supervise

    level = args.log_level.upper()
    logging.basicConfig(format=LOG_FORMAT if args.workers > 1 else "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    try:
        settings = settings_from(args)
    except ValueError as error:
        raise SystemExit(f"optimodel serve: {error}") from None
    if settings.workers > 1:
        return supervise(settings, level)
    return run_server(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m optimodel.serve ...`: the same as `optimodel serve ...` without the main CLI."""
    parser = argparse.ArgumentParser(prog="optimodel")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.handler(args)
    return result
