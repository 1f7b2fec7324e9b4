"""A small dict-in, dict-out client for the few API calls the node agent makes.

The generated kubernetes models are slow to build and awkward to patch partially; the agent
works on plain JSON objects through the client's transport (TLS and credentials from the
kubeconfig) instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from kubernetes import config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


def is_not_found(err: Exception) -> bool:
    """True for an ApiException with status 404."""
    return isinstance(err, ApiException) and err.status == 404


class Kube:
    """JSON calls against the API server named in a kubeconfig."""

    def __init__(self, kubeconfig: str) -> None:
        self.client: ApiClient = config.new_client_from_config(config_file=kubeconfig)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: Any = 30,
    ) -> Obj:
        """One call; raises ApiException on an error status."""
        if query:
            path = f"{path}?{urlencode(query)}"
        resp = self.client.call_api(
            path,
            method,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        data = resp[0].data if isinstance(resp, tuple) else resp.data
        return json.loads(data) if data else {}

    def get(self, path: str) -> Obj:
        """GET an object."""
        return self.request("GET", path)

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        """JSON merge patch (lists are replaced, not merged)."""
        return self.request("PATCH", path, patch, content_type=MERGE_PATCH)

    def create(self, path: str, body: Obj) -> Obj:
        """POST an object."""
        return self.request("POST", path, body)

    def delete(self, path: str, body: Obj | None = None) -> Obj:
        """DELETE an object."""
        return self.request("DELETE", path, body)

    def watch(self, path: str, query: dict[str, Any]) -> Iterator[Obj]:
        """Events of one watch request (it ends when the server closes it)."""
        query = {**query, "watch": "true", "allowWatchBookmarks": "true"}
        resp = self.client.call_api(
            f"{path}?{urlencode(query)}",
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=(10, int(query.get("timeoutSeconds", 300)) + 30),
        )
        resp = resp[0] if isinstance(resp, tuple) else resp
        try:
            for line in iter_resp_lines(resp):
                if line:
                    yield json.loads(line)
        finally:
            resp.release_conn()


def pod_path(namespace: str, name: str) -> str:
    """The API path of a pod."""
    return f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
