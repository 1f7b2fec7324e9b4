"""Readiness and liveness probes: httpGet and tcpSocket from the host to the pod's address, exec
inside the container's sandbox."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from collections.abc import Callable

from optimodel.devcluster.nodeagent.kube import Obj

ExecRunner = Callable[[list[str], float], int]


def resolve_port(port: int | str, container: Obj) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"no container port named {port}")


def run_probe(probe: Obj, pod_ip: str, container: Obj, run_exec: ExecRunner) -> bool:
    """One probe attempt: True on success."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            return _http(probe["httpGet"], pod_ip, container, timeout)
        if "tcpSocket" in probe:
            port = resolve_port(probe["tcpSocket"]["port"], container)
            with socket.create_connection((probe["tcpSocket"].get("host") or pod_ip, port), timeout=timeout):
                return True
        if "exec" in probe:
            return run_exec(probe["exec"]["command"], timeout) == 0
    except (OSError, ValueError, http.client.HTTPException, subprocess.TimeoutExpired):
        return False
    return False  # grpc probes are not supported: never succeed rather than lie


def _http(get: Obj, pod_ip: str, container: Obj, timeout: float) -> bool:
    host, port = get.get("host") or pod_ip, resolve_port(get["port"], container)
    conn: http.client.HTTPConnection
    if get.get("scheme", "HTTP").upper() == "HTTPS":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
        conn.request("GET", get.get("path") or "/", headers=headers)
        return 200 <= conn.getresponse().status < 400
    finally:
        conn.close()
