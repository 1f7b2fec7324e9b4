"""`python -m optimodel.devcluster.nodeagent`: the node agent process the launcher starts."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from types import FrameType

from optimodel.devcluster.network import NetworkConfig
from optimodel.devcluster.nodeagent.agent import Agent


def main() -> None:
    """Parse flags, run the agent until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="optimodel-nodeagent", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default="optimodel-node")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--cidr", required=True, help="bridge address with prefix, e.g. 10.213.0.1/24")
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--pki-dir", type=Path, help="CA and node serving certificate for `kubectl logs`")
    parser.add_argument("--delete-bridge", action="store_true", help="remove the bridge on exit")
    parser.add_argument("--max-grace", type=float, default=10.0, help="cap on terminationGracePeriodSeconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    agent = Agent(
        args.kubeconfig,
        args.node_name,
        NetworkConfig(args.bridge, args.cidr),
        args.state_dir,
        args.api_port,
        args.max_grace,
        args.delete_bridge,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.pki_dir:
        from optimodel.devcluster.nodeagent.logserver import serve_logs

        serve_logs(args.pki_dir, args.state_dir / "logs", NetworkConfig(args.bridge, args.cidr).host_ip)
    agent.run()


if __name__ == "__main__":
    main()
