"""A Git repository served over Git's smart HTTP on a local address, for Flux's source-controller.

Flux refuses `file://` URLs and go-git does not speak Git's dumb HTTP, so a static file server will
not do: every request goes to `git http-backend` (Git's own CGI program), and this module is only
the CGI bridge: it passes the request as CGI variables and stdin and sends back the status, headers
and body the program printed. Read-only (upload-pack); the tests commit to the working copy and
Flux fetches from it, as it would from a forge.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class _Backend(BaseHTTPRequestHandler):
    """One request through `git http-backend`; the served root is set on the server class."""

    project_root: Path

    def do_GET(self) -> None:
        self._cgi(b"")

    def do_POST(self) -> None:
        self._cgi(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _cgi(self, body: bytes) -> None:
        url = urlsplit(self.path)
        env = {
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            # go-git may gzip its upload-pack request; http-backend inflates it when told.
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        # The CGI headers, then an empty line, then the body; git ends each header line with CRLF.
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        if proc.returncode != 0 and not head:
            status, payload = 500, proc.stderr
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Quiet: a poll every few seconds would flood the test's output."""


class GitRepo:
    """A working copy whose commits are served at `url` (see `served_repo`)."""

    def __init__(self, worktree: Path, url: str) -> None:
        self.worktree, self.url = worktree, url

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.worktree), *args], capture_output=True, text=True, timeout=60, check=True
        )
        return proc.stdout.strip()

    def commit(self, message: str) -> str:
        """Commit everything in the working copy; the new commit's hash (what Flux reports)."""
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@contextmanager
def served_repo(folder: Path, host: str = "127.0.0.1") -> Iterator[GitRepo]:
    """A fresh repository (branch `main`) in `folder`, served over smart HTTP on `host` for the block."""
    worktree = folder / "repo"
    worktree.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(worktree)], check=True)
    for key, value in (("user.name", "optimodel tests"), ("user.email", "tests@optimodel.invalid")):
        subprocess.run(["git", "-C", str(worktree), "config", key, value], check=True)
    handler = type("Backend", (_Backend,), {"project_root": folder})
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="git-http-backend", daemon=True)
    thread.start()
    try:
        yield GitRepo(worktree, f"http://{host}:{server.server_address[1]}/repo")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
