"""A kubelet-like HTTPS endpoint on the node's port 10250 answering `/containerLogs/NS/POD/CONTAINER`,
so that `kubectl logs` works. Only the API server (its kubelet client certificate, signed by the
cluster CA) may connect."""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from optimodel.devcluster.nodeagent.node import KUBELET_PORT


def _log_file(log_root: Path, namespace: str, pod: str, container: str) -> Path | None:
    """The newest log of that container (pods with one name may come and go)."""
    candidates = sorted(log_root.glob(f"{namespace}_{pod}_*/{container}.log"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def _handler(log_root: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            return

        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/NS/POD/CONTAINER is served")
                return
            path = _log_file(log_root, parts[1], parts[2], parts[3])
            if path is None:
                self.send_error(404, f"no logs for container {parts[3]} of pod {parts[1]}/{parts[2]}")
                return
            query = parse_qs(url.query)
            data = path.read_bytes()
            if "tailLines" in query:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(query["tailLines"][0]) :]) if int(query["tailLines"][0]) else b""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(data)
            if query.get("follow", ["false"])[0] == "true":
                self._follow(path, path.stat().st_size)

        def _follow(self, path: Path, offset: int) -> None:
            """Stream what the container writes next until the client goes away."""
            try:
                while True:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                    if chunk:
                        offset += len(chunk)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                return

    return Handler


def serve_logs(pki_dir: Path, log_root: Path, host_ip: str) -> None:
    """Serve container logs on host_ip:10250 from a daemon thread."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki_dir / "node.crt"), str(pki_dir / "node.key"))
    ctx.load_verify_locations(str(pki_dir / "ca.crt"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer((host_ip, KUBELET_PORT), _handler(log_root))
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="logs").start()
