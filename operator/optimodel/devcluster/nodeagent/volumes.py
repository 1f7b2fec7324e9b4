"""A pod's volumes as host directories under the pod's runtime folder, and each container's mounts.

emptyDir is a plain directory (medium Memory too); configMap, secret, downwardAPI and projected
volumes are written once when the pod starts (no refresh); the projected service-account token
comes from the TokenRequest API bound to the pod; hostPath is the host path itself. Other volume
types fail the pod's containers with a clear message.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from optimodel.devcluster.nodeagent.kube import Kube, Obj
from optimodel.devcluster.nodeagent.refs import ConfigError, configmap_data, field_value, secret_data

DEFAULT_TOKEN_SECONDS = 3607


def materialize(api: Kube, pod: Obj, root: Path) -> dict[str, str]:
    """Create every volume of the pod under `root`; returns volume name -> host path."""
    paths: dict[str, str] = {}
    for vol in pod["spec"].get("volumes") or []:
        name = vol["name"]
        if "hostPath" in vol:
            paths[name] = vol["hostPath"]["path"]
            continue
        target = root / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        if "emptyDir" in vol:
            target.chmod(0o777)
        elif "configMap" in vol or "secret" in vol:
            _write_keyed(api, pod, vol, target)
        elif "downwardAPI" in vol:
            _write_downward(pod, vol["downwardAPI"].get("items") or [], target, vol["downwardAPI"].get("defaultMode"))
        elif "projected" in vol:
            _write_projected(api, pod, vol["projected"], target)
        else:
            kind = next((k for k in vol if k != "name"), "unknown")
            raise ConfigError(f"volume {name}: type {kind} is not supported by the optimodel node agent")
        paths[name] = str(target)
    return paths


def _write_file(target: Path, rel: str, data: bytes, mode: int | None) -> None:
    path = target / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode if mode is not None else 0o644)


def _write_items(target: Path, data: dict[str, bytes], items: list[Obj], mode: int | None, what: str) -> None:
    if not items:
        for key, value in data.items():
            _write_file(target, key, value, mode)
        return
    for item in items:
        if item["key"] not in data:
            raise ConfigError(f"{what}: key {item['key']} not found")
        _write_file(target, item["path"], data[item["key"]], item.get("mode", mode))


def _write_keyed(api: Kube, pod: Obj, source: Obj, target: Path, mode: int | None = None) -> None:
    """A configMap or secret volume (or projected source)."""
    ns = pod["metadata"]["namespace"]
    if "configMap" in source:
        ref = source["configMap"]
        data = configmap_data(api, ns, ref["name"], ref.get("optional", False))
        what = f'configmap "{ref["name"]}"'
    else:
        ref = source["secret"]
        name = ref.get("secretName") or ref.get("name")
        data = secret_data(api, ns, name, ref.get("optional", False))
        what = f'secret "{name}"'
    if data is not None:
        _write_items(target, data, ref.get("items") or [], ref.get("defaultMode", mode), what)


def _write_downward(pod: Obj, items: list[Obj], target: Path, mode: int | None) -> None:
    for item in items:
        if "fieldRef" not in item:
            raise ConfigError(f"downwardAPI item {item['path']}: only fieldRef is supported")
        _write_file(
            target,
            item["path"],
            field_value(pod, item["fieldRef"]["fieldPath"]).encode(),
            item.get("mode", mode),
        )


def _write_projected(api: Kube, pod: Obj, projected: Obj, target: Path) -> None:
    mode = projected.get("defaultMode")
    for source in projected.get("sources") or []:
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            token = request_token(api, pod, sat.get("audience"), sat.get("expirationSeconds", DEFAULT_TOKEN_SECONDS))
            _write_file(target, sat["path"], token.encode(), mode)
        elif "configMap" in source or "secret" in source:
            _write_keyed(api, pod, source, target, mode)
        elif "downwardAPI" in source:
            _write_downward(pod, source["downwardAPI"].get("items") or [], target, mode)
        else:
            raise ConfigError(f"projected source {next(iter(source))} is not supported")


def request_token(api: Kube, pod: Obj, audience: str | None, seconds: int) -> str:
    """A service-account token bound to this pod (TokenRequest API)."""
    meta = pod["metadata"]
    spec: dict[str, Any] = {
        "expirationSeconds": seconds,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
    }
    if audience:
        spec["audiences"] = [audience]
    sa = pod["spec"].get("serviceAccountName") or "default"
    result = api.create(
        f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    return str(result["status"]["token"])


def container_mounts(container: Obj, volumes: dict[str, str]) -> list[dict[str, Any]]:
    """The container's volumeMounts as sandbox mounts (host source, mount path, read-only)."""
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volumes:
            raise ConfigError(f"volumeMount {vm['mountPath']}: no volume named {vm['name']}")
        source = volumes[vm["name"]]
        if vm.get("subPath"):
            source = os.path.join(source, vm["subPath"])
            if not os.path.exists(source):
                os.makedirs(source)
        mounts.append({"source": source, "target": vm["mountPath"], "readOnly": bool(vm.get("readOnly"))})
    return mounts
