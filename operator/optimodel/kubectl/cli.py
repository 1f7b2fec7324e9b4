"""The console script `kubectl-optimodel`, run by kubectl as `kubectl optimodel get|retry ...`.

Thin: parses arguments, loads the user's kubeconfig (KUBECONFIG, `--kubeconfig`, `--context`, the
context's namespace as kubectl picks it), gathers, and prints what the pure view draws. `--watch`
redraws every `--interval` seconds until interrupted; with `-o json` it prints one document per
change, one per line, for scripts. The Kubernetes client is imported here and in `gather` only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from optimodel.resources import RETRY_ANNOTATION
from optimodel.spec import API_GROUP, API_VERSION, PLURAL

CLEAR = "\x1b[H\x1b[2J"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace of the OptimizedModel (default: the context's)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG or ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context to use")
    parser = argparse.ArgumentParser(
        prog="kubectl optimodel", description="Watch an OptimizedModel roll out, and retry it."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = commands.add_parser(
        "get", parents=[common], help="the resource as a tree: conditions, candidate and gates, Job, pods, Events"
    )
    get.add_argument("name")
    get.add_argument("-w", "--watch", action="store_true", help="redraw as it changes (Ctrl-C to stop)")
    get.add_argument("--interval", type=float, default=2.0, help="seconds between redraws with --watch")
    get.add_argument("-o", "--output", choices=("tree", "json"), default="tree")
    retry = commands.add_parser(
        "retry", parents=[common], help=f"ask the operator to retry a failed Job ({RETRY_ANNOTATION})"
    )
    retry.add_argument("name")
    return parser


def _connect(args: argparse.Namespace) -> tuple[Any, str]:
    """An API client from the user's kubeconfig, and the namespace kubectl would use."""
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
    chosen = next((c for c in contexts if c["name"] == args.context), active) if args.context else active
    namespace = args.namespace or (chosen or {}).get("context", {}).get("namespace") or "default"
    api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    return api, namespace


def _now() -> datetime:
    return datetime.now(UTC)


def _get(api: Any, namespace: str, args: argparse.Namespace) -> int:
    from optimodel.kubectl.gather import gather
    from optimodel.kubectl.view import render, summarize

    last = None
    while True:
        summary = summarize(gather(api, namespace, args.name))
        if args.output == "json":
            if summary != last:
                print(json.dumps(summary, indent=None if args.watch else 2), flush=True)
        else:
            print((CLEAR if args.watch else "") + render(summary, _now()), end="", flush=True)
        if not args.watch:
            return 0
        last = summary
        time.sleep(args.interval)  # a display refresh, not a wait for a state


def _retry(api: Any, namespace: str, name: str) -> int:
    from kubernetes import client

    from optimodel.kubectl.gather import get_model

    get_model(api, namespace, name)  # a clear "not found" rather than a 404 from the patch
    value = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"metadata": {"annotations": {RETRY_ANNOTATION: value}}}
    client.CustomObjectsApi(api).patch_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name, patch)
    print(f"optimizedmodel.{API_GROUP}/{name} retry requested ({RETRY_ANNOTATION}={value})")
    print("A failed Job is run again in a new Job; otherwise the request is recorded and ignored (see its Events).")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from kubernetes import client, config
    except ImportError:
        print("error: kubectl-optimodel needs the Kubernetes client: pip install 'optimodel[kubectl]'", file=sys.stderr)
        return 1
    from optimodel.kubectl.gather import NotFound

    try:
        api, namespace = _connect(args)
        if args.command == "retry":
            return _retry(api, namespace, args.name)
        return _get(api, namespace, args)
    except NotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except client.ApiException as error:
        print(f"error: Kubernetes API: {error.status} {error.reason}: {_api_message(error)}", file=sys.stderr)
        return 1
    except config.ConfigException as error:
        print(f"error: kubeconfig: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _api_message(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message", ""))
    except (TypeError, ValueError):
        return ""


if __name__ == "__main__":
    sys.exit(main())
