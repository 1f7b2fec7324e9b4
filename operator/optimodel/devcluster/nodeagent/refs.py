"""Resolving what a pod refers to: ConfigMap and Secret keys and downward-API fields."""

from __future__ import annotations

import base64
import re

from kubernetes.client.exceptions import ApiException

from optimodel.devcluster.nodeagent.kube import Kube, Obj, is_not_found


class ConfigError(Exception):
    """The pod refers to something missing; the container waits (CreateContainerConfigError)."""


def configmap_data(api: Kube, namespace: str, name: str, optional: bool) -> dict[str, bytes] | None:
    """All keys of a ConfigMap as bytes; None when missing and optional."""
    obj = _get(api, f"/api/v1/namespaces/{namespace}/configmaps/{name}", "configmap", name, optional)
    if obj is None:
        return None
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def secret_data(api: Kube, namespace: str, name: str, optional: bool) -> dict[str, bytes] | None:
    """All keys of a Secret, decoded; None when missing and optional."""
    obj = _get(api, f"/api/v1/namespaces/{namespace}/secrets/{name}", "secret", name, optional)
    if obj is None:
        return None
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def _get(api: Kube, path: str, kind: str, name: str, optional: bool) -> Obj | None:
    try:
        return api.get(path)
    except ApiException as err:
        if is_not_found(err):
            if optional:
                return None
            raise ConfigError(f'{kind} "{name}" not found') from err
        raise


def key_of(data: dict[str, bytes] | None, key: str, kind: str, name: str, optional: bool) -> bytes | None:
    """One key; None when optional and absent, ConfigError when required and absent."""
    if data is not None and key in data:
        return data[key]
    if optional:
        return None
    raise ConfigError(f'couldn\'t find key {key} in {kind} "{name}"')


_MAP_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


def field_value(pod: Obj, path: str) -> str:
    """The downward-API value of a fieldRef path such as metadata.name or status.podIP."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs") or []),
        "status.hostIP": status.get("hostIP", ""),
        "status.hostIPs": ",".join(p["ip"] for p in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    match = _MAP_FIELD.fullmatch(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef {path}")
