"""Kubeconfig files for the admin, the control-plane components and minted users."""

from __future__ import annotations

from pathlib import Path

import yaml

from optimodel.devcluster.pki import CertPair


def write_kubeconfig(
    path: Path, server: str, ca: Path, user: str, cert: CertPair | None = None, token: str | None = None
) -> Path:
    """Write a one-context kubeconfig authenticating with a client certificate or a bearer token."""
    credentials: dict[str, str] = {}
    if cert is not None:
        credentials = {"client-certificate": str(cert.cert), "client-key": str(cert.key)}
    if token is not None:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "optimodel-dev", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "optimodel-dev", "context": {"cluster": "optimodel-dev", "user": user}}],
        "current-context": "optimodel-dev",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
