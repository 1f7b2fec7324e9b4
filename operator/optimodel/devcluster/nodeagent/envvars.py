"""A container's environment, as a kubelet computes it.

Order of precedence (lowest first): the service variables for the API server, `envFrom`, `env`.
`PATH` always starts with the directory of the agent's Python so that `python` and `optimodel`
resolve to the project's environment (see docs/devcluster.md, "Images").
"""

from __future__ import annotations

import os
import re
import sys

from optimodel.devcluster.nodeagent.kube import Kube, Obj
from optimodel.devcluster.nodeagent.refs import configmap_data, field_value, key_of, secret_data

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay as is."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(repl, value)


def service_env(host_ip: str, api_port: int) -> dict[str, str]:
    """The variables in-cluster clients use to find the API server."""
    return {
        "KUBERNETES_SERVICE_HOST": host_ip,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        "KUBERNETES_PORT": f"tcp://{host_ip}:{api_port}",
    }


def container_env(api: Kube, pod: Obj, container: Obj, host_ip: str, api_port: int) -> dict[str, str]:
    """The full environment of one container; raises ConfigError for a missing reference."""
    ns = pod["metadata"]["namespace"]
    env = {"HOSTNAME": pod["metadata"]["name"], "HOME": "/root", **service_env(host_ip, api_port)}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref = src["configMapRef"]
            data = configmap_data(api, ns, ref["name"], ref.get("optional", False))
        else:
            ref = src["secretRef"]
            data = secret_data(api, ns, ref["name"], ref.get("optional", False))
        for key, raw in (data or {}).items():
            env[prefix + key] = raw.decode(errors="replace")
    for var in container.get("env") or []:
        value = _value_of(api, pod, var, env)
        if value is not None:
            env[var["name"]] = value
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env.get("PATH", DEFAULT_PATH)
    return env


def _value_of(api: Kube, pod: Obj, var: Obj, env: dict[str, str]) -> str | None:
    if "valueFrom" not in var:
        return expand(var.get("value", ""), env)
    ns, src = pod["metadata"]["namespace"], var["valueFrom"]
    if "fieldRef" in src:
        return field_value(pod, src["fieldRef"]["fieldPath"])
    if "configMapKeyRef" in src:
        ref = src["configMapKeyRef"]
        optional = ref.get("optional", False)
        data = configmap_data(api, ns, ref["name"], optional)
        raw = key_of(data, ref["key"], "configmap", ref["name"], optional)
    elif "secretKeyRef" in src:
        ref = src["secretKeyRef"]
        optional = ref.get("optional", False)
        data = secret_data(api, ns, ref["name"], optional)
        raw = key_of(data, ref["key"], "secret", ref["name"], optional)
    elif "resourceFieldRef" in src:
        return _resource_value(pod, src["resourceFieldRef"])
    else:
        return None
    return None if raw is None else raw.decode(errors="replace")


def _resource_value(pod: Obj, ref: Obj) -> str:
    """limits/requests of the named container, unconverted (divisor ignored); node size when unset."""
    name = ref.get("containerName")
    container = next((c for c in pod["spec"]["containers"] if c["name"] == name), pod["spec"]["containers"][0])
    kind, _, resource = ref["resource"].partition(".")
    value = (container.get("resources") or {}).get(kind, {}).get(resource)
    if value is None:
        return (
            str(os.cpu_count()) if resource == "cpu" else str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        )
    return str(value)
