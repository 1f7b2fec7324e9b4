"""`optimodel cluster up|down|status`: the local cluster behind `make cluster`.

The main CLI calls `add_parser(subparsers)`; each subcommand stores its handler in `handler`
(returning the exit code). The control plane (and `cryptography`, which only the `devcluster` extra
installs) is imported when a `cluster` command runs, so the images without it still run `optimodel`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from optimodel.devcluster.network import DEFAULT_CIDR, DEFAULT_LINK, NetworkConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `cluster` with its `up`, `down` and `status` subcommands."""
    cluster = subparsers.add_parser("cluster", help="a local Kubernetes cluster: control plane and one real node")
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    for name, handler, text in (
        ("up", _up, "start it (or report that it runs)"),
        ("down", _down, "stop exactly what `up` started and clean up"),
        ("status", _status, "show its processes"),
        ("import-images", _import_images, "import the images `make images` built into the running node"),
    ):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--state-dir", type=Path, default=Path(".dev"), help="default: .dev")
        sub.set_defaults(handler=handler)
        if name == "up":
            sub.add_argument(
                "--link", default=DEFAULT_LINK, help=f"the node's link on the host (default {DEFAULT_LINK})"
            )
            sub.add_argument(
                "--cidr", default=DEFAULT_CIDR, help=f"the host's address/prefix on it (default {DEFAULT_CIDR})"
            )
            sub.add_argument("--bin-dir", type=Path, help="where the Kubernetes binaries are (default .dev/bin)")


def _up(args: argparse.Namespace) -> int:
    from optimodel.devcluster.controlplane import ClusterError, ControlPlane

    plane = ControlPlane(args.state_dir, args.bin_dir)
    if plane.running():
        print(f"already running\n{plane.status()}")
        return 0
    started = time.monotonic()
    try:
        plane.up(NetworkConfig(args.link, args.cidr))
    except ClusterError as err:
        print(f"error: {err}")
        return 1
    print(f"cluster ready in {time.monotonic() - started:.1f} s\n{plane.status()}")
    print(f"try: kubectl --kubeconfig {plane.kubeconfig} get nodes")
    return 0


def _down(args: argparse.Namespace) -> int:
    from optimodel.devcluster.controlplane import ControlPlane

    ControlPlane(args.state_dir).down()
    print("cluster stopped")
    return 0


def _import_images(args: argparse.Namespace) -> int:
    from optimodel.devcluster.controlplane import ControlPlane

    plane = ControlPlane(args.state_dir)
    state = plane.load_state()
    if state is None or not plane.running():
        print(f"no cluster running in {args.state_dir}")
        return 3
    imported = plane.node(state).import_images(sorted(plane.images_dir.glob("*.tar")))
    print("\n".join(f"imported {name}" for name in imported) or "the node has every image already")
    return 0


def _status(args: argparse.Namespace) -> int:
    from optimodel.devcluster.controlplane import ControlPlane

    plane = ControlPlane(args.state_dir)
    print(plane.status())
    return 0 if plane.running() else 3
