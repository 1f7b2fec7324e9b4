"""Reads what `kubectl optimodel get` draws. Adapter layer: the Kubernetes client, nothing else.

Only `get` and `list` in the resource's namespace, with the user's kubeconfig: what `kubectl get`
could show the same user. Objects are kept as the API's JSON (camelCase, as `kubectl get -o json`
prints them) so that the pure view reads them like its golden fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes import client

from optimodel.kubectl.view import Gathered
from optimodel.resources import Owner, canary_name, serving_name, shadow_name
from optimodel.spec import API_GROUP, API_VERSION, PLURAL

CANDIDATES = (shadow_name, canary_name)


class NotFound(Exception):
    """The OptimizedModel does not exist (or the user may not see it)."""


def _raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The response body as JSON, not as the client's snake_case models."""
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def _optional(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return _raw(call, *args)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def get_model(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found = _optional(
        client.CustomObjectsApi(api).get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL, name
    )
    if found is None:
        raise NotFound(f"optimizedmodels.{API_GROUP} {name!r} not found in namespace {namespace!r}")
    return dict(found)


def gather(api: client.ApiClient, namespace: str, name: str) -> Gathered:
    """The resource, its Jobs, its serving and candidate (shadow, canary) Deployments with ReplicaSets,
    their pods and the last Events."""
    model = get_model(api, namespace, name)
    uid = model["metadata"]["uid"]
    instance = f"app.kubernetes.io/instance={name}"
    batch, apps, core = client.BatchV1Api(api), client.AppsV1Api(api), client.CoreV1Api(api)
    jobs = [
        job
        for job in _raw(batch.list_namespaced_job, namespace, label_selector=instance)["items"]
        if any(ref.get("uid") == uid for ref in job["metadata"].get("ownerReferences") or [])
    ]
    owner = Owner(name, namespace, uid)
    deployment = _optional(apps.read_namespaced_deployment, serving_name(owner), namespace)
    candidates = [
        found
        for found in (_optional(apps.read_namespaced_deployment, name_of(owner), namespace) for name_of in CANDIDATES)
        if found is not None
    ]
    replica_sets = _raw(apps.list_namespaced_replica_set, namespace, label_selector=instance)["items"]
    pods = _raw(core.list_namespaced_pod, namespace, label_selector=instance)["items"]
    deployments = [d for d in (deployment, *candidates) if d is not None]
    uids = {uid} | {o["metadata"]["uid"] for o in [*jobs, *replica_sets, *pods, *deployments]}
    events = [
        e
        for e in _raw(core.list_namespaced_event, namespace)["items"]
        if (e.get("involvedObject") or {}).get("uid") in uids
    ]
    return Gathered(model, jobs, deployment, replica_sets, pods, events, candidates)
