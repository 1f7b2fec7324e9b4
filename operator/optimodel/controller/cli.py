"""`optimodel operator`: parse the flags, load the settings, run kopf. Controller layer.

kopf and the Kubernetes client are imported when the command runs, not when `optimodel --help` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from optimodel.controller import redact
from optimodel.controller.settings import Settings

if TYPE_CHECKING:
    from optimodel.controller.leader import LeaderElection


def _run(args: argparse.Namespace) -> int:
    import kopf

    from optimodel.controller.handlers import Operator, register

    settings = Settings.from_env()
    namespaces = () if args.all_namespaces else tuple(args.namespace or ()) or settings.namespaces
    settings = dataclasses.replace(
        settings,
        namespaces=namespaces,
        metrics_port=args.metrics_port if args.metrics_port is not None else settings.metrics_port,
        health_port=args.health_port if args.health_port is not None else settings.health_port,
        kubeconfig=args.kubeconfig or settings.kubeconfig,
    )
    logging.getLogger().handlers.clear()  # kopf's handler only: one JSON line per record
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per liveness probe drowns the rest
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    redact.install(args.verbose)  # after kopf.configure, which sets every logger to DEBUG when verbose
    operator = Operator(settings)
    registry = kopf.OperatorRegistry()
    register(registry, operator)
    if settings.metrics_port:
        operator.metrics.serve(settings.metrics_port)
    election = _lead(settings, operator.metrics.leader.set)
    try:
        # standalone: kopf's own peering stays off; the Lease (controller/leader.py says why) decides.
        kopf.run(
            registry=registry,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        )
    finally:
        if election is not None:
            election.release()
    return 0


def _lead(settings: Settings, leading: Callable[[float], None]) -> LeaderElection | None:
    """With OPTIMODEL_LEASE_NAMESPACE: wait until this process holds the Lease (answering its liveness
    probe meanwhile). Without: no election, this operator acts at once."""
    if not settings.lease_namespace:
        leading(1)
        return None
    from optimodel.controller.kube import make_api_client
    from optimodel.controller.leader import LeaderElection, default_identity, standby_health

    api = make_api_client(settings.kubeconfig, settings.api_timeout_seconds)
    election = LeaderElection(
        api, settings.lease_namespace, settings.lease_name, default_identity(), lambda on: leading(int(on))
    )
    leading(0)
    with standby_health(settings.health_port, election):
        election.acquire()
    return election


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `optimodel operator`."""
    parser = subparsers.add_parser(
        "operator",
        help="run the kopf operator that reconciles OptimizedModel resources",
        description="Watch OptimizedModels, run optimization Jobs, roll out serving Deployments. Settings "
        "also come from OPTIMODEL_* environment variables (docs/operator.md).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        metavar="NS",
        help="watch this namespace (repeatable; default: OPTIMODEL_NAMESPACES or all)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--metrics-port", type=int, help="Prometheus metrics port (0 disables; default 9090)")
    parser.add_argument(
        "--health-port", type=int, help="liveness endpoint /healthz port (0 disables; default 8080)"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    parser.add_argument(
        "--log-format", choices=["json", "text"], default="json", help="log format (default json)"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logs")
    parser.set_defaults(handler=_run)
