"""`kubectl optimodel get`: the gathered objects -> a summary (the `-o json` document) -> text. Pure layer.

Objects come in as the API returns them (camelCase JSON, as `kubectl get -o json` prints them), so
the golden tests feed this module plain dicts and a fixed clock, and a change of layout shows as a
diff of the golden file. Ages are computed only when drawing: the JSON keeps timestamps for scripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optimodel.kubectl.health import DEGRADED, HEALTHY, health
from optimodel.resources.common import ARTIFACT_SHA256_ANNOTATION, ATTEMPT_ANNOTATION

Obj = Mapping[str, Any]
MAX_EVENTS = 8
ICONS = {HEALTHY: "✔", DEGRADED: "✖"}


@dataclass(frozen=True)
class Gathered:
    """Everything `get` reads about one OptimizedModel; each list holds only its own children."""

    model: Obj
    jobs: Sequence[Obj] = ()
    deployment: Obj | None = None
    replica_sets: Sequence[Obj] = ()
    pods: Sequence[Obj] = ()
    events: Sequence[Obj] = ()
    candidates: Sequence[Obj] = ()  # the `<name>-shadow` and `<name>-canary` Deployments that exist


@dataclass
class Node:
    kind: str
    name: str
    status: str
    created: str | None
    info: str = ""
    children: list[Node] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "created": self.created,
            "info": self.info,
            "children": [child.to_json() for child in self.children],
        }


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _short(sha256: str | None) -> str:
    return f"sha256:{sha256[:12]}" if sha256 else ""


def _owned_by(obj: Obj, owner: Obj) -> bool:
    uid = _meta(owner).get("uid")
    return any(ref.get("uid") == uid for ref in _meta(obj).get("ownerReferences") or [])


def _pod_node(pod: Obj) -> Node:
    """Phase, or the reason a container waits (CrashLoopBackOff, ImagePullBackOff), readiness and restarts."""
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    waiting = next(
        (c["state"]["waiting"].get("reason") for c in containers if "waiting" in (c.get("state") or {})), None
    )
    state = "Terminating" if _meta(pod).get("deletionTimestamp") else waiting or status.get("phase", "Unknown")
    ready = sum(1 for c in containers if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    info = [f"ready {ready}/{len(containers)}", f"restarts {restarts}"]
    sha = (_meta(pod).get("annotations") or {}).get(ARTIFACT_SHA256_ANNOTATION)
    if sha:
        info.append(_short(sha))
    return Node("Pod", _meta(pod)["name"], state, _meta(pod).get("creationTimestamp"), ", ".join(info))


def _pods_of(owner: Obj, pods: Sequence[Obj]) -> list[Node]:
    return [_pod_node(pod) for pod in _by_age(pods) if _owned_by(pod, owner)]


def _by_age(objects: Sequence[Obj]) -> list[Obj]:
    return sorted(objects, key=lambda o: (_meta(o).get("creationTimestamp") or "", _meta(o).get("name", "")))


def _job_node(job: Obj, pods: Sequence[Obj]) -> Node:
    status = job.get("status") or {}
    finished = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        ),
        None,
    )
    state = finished["type"] if finished else "Running" if status.get("active") else "Pending"
    info = []
    attempt = (_meta(job).get("annotations") or {}).get(ATTEMPT_ANNOTATION)
    if attempt:
        info.append(f"attempt {attempt}")
    counts = [(status.get(k) or 0, k) for k in ("active", "succeeded", "failed")]
    info += [f"{n} {word}" for n, word in counts if n]
    if finished and finished.get("reason") and state == "Failed":
        info.append(str(finished["reason"]))
    if status.get("startTime") and status.get("completionTime"):
        info.append(f"took {_duration(status['startTime'], status['completionTime'])}")
    return Node(
        "Job", _meta(job)["name"], state, _meta(job).get("creationTimestamp"), ", ".join(info), _pods_of(job, pods)
    )


def _replica_set_node(rs: Obj, pods: Sequence[Obj]) -> Node:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    wanted = int(spec.get("replicas") or 0)
    state = "ScaledDown" if wanted == 0 else f"{status.get('readyReplicas', 0)}/{wanted}"
    annotations = _meta(rs).get("annotations") or {}
    template = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    info = (
        [f"revision {annotations['deployment.kubernetes.io/revision']}"]
        if "deployment.kubernetes.io/revision" in annotations
        else []
    )
    sha = template.get(ARTIFACT_SHA256_ANNOTATION)
    if sha:
        info.append(f"serves {_short(sha)}")
    return Node(
        "ReplicaSet", _meta(rs)["name"], state, _meta(rs).get("creationTimestamp"), ", ".join(info), _pods_of(rs, pods)
    )


def _revision(rs: Obj) -> int:
    return int((_meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))


def _deployment_node(deployment: Obj, replica_sets: Sequence[Obj], pods: Sequence[Obj]) -> Node:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    template = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    sha = template.get(ARTIFACT_SHA256_ANNOTATION)
    info = [f"{status.get('updatedReplicas', 0)} updated, {status.get('availableReplicas', 0)} available"]
    if sha:
        info.append(f"wants {_short(sha)}")
    owned = sorted((rs for rs in replica_sets if _owned_by(rs, deployment)), key=_revision, reverse=True)
    return Node(
        "Deployment",
        _meta(deployment)["name"],
        f"{status.get('readyReplicas', 0)}/{wanted}",
        _meta(deployment).get("creationTimestamp"),
        ", ".join(info),
        [_replica_set_node(rs, pods) for rs in owned],
    )


def _tree(gathered: Gathered) -> Node:
    model, status = gathered.model, gathered.model.get("status") or {}
    children = [_job_node(job, gathered.pods) for job in _by_age(gathered.jobs)]
    for deployment in (gathered.deployment, *gathered.candidates):
        if deployment is not None:
            children.append(_deployment_node(deployment, gathered.replica_sets, gathered.pods))
    return Node(
        "OptimizedModel",
        _meta(model)["name"],
        status.get("phase") or "Pending",
        _meta(model).get("creationTimestamp"),
        f"gates {status['gatesSummary']}" if status.get("gatesSummary") else "",
        children,
    )


def _event(event: Obj) -> dict[str, Any]:
    involved = event.get("involvedObject") or {}
    return {
        "time": event.get("lastTimestamp") or event.get("eventTime") or _meta(event).get("creationTimestamp"),
        "type": event.get("type", ""),
        "reason": event.get("reason", ""),
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        "count": event.get("count") or 1,
        "message": " ".join(str(event.get("message", "")).split()),
    }


def summarize(gathered: Gathered) -> dict[str, Any]:
    """The `-o json` document: what the tree shows, with timestamps instead of ages."""
    model = gathered.model
    status, meta = model.get("status") or {}, _meta(model)
    verdict, why = health(model)
    events = sorted((_event(e) for e in gathered.events), key=lambda e: e["time"] or "")[-MAX_EVENTS:]
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "health": {"status": verdict, "message": why},
        "phase": status.get("phase"),
        "message": status.get("message", ""),
        "conditions": list(status.get("conditions") or []),
        "candidate": status.get("candidate"),
        "gates": list(status.get("gates") or []),
        "serving": status.get("serving"),
        "analysis": status.get("analysis"),
        "tree": _tree(gathered).to_json(),
        "events": events,
    }


# Drawing.


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _duration(start: str, end: str) -> str:
    return _span((_parse(end) - _parse(start)).total_seconds())


def _span(seconds: float) -> str:
    """kubectl's short ages: 45s, 3m, 5h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _age(stamp: str | None, now: datetime) -> str:
    return _span((now - _parse(stamp)).total_seconds()) if stamp else ""


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _number(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _candidate_lines(summary: Mapping[str, Any]) -> list[str]:
    candidate = summary.get("candidate")
    if not candidate:
        return ["Candidate:     none yet"]
    kind = " ".join(str(candidate[k]) for k in ("method", "quantization") if candidate.get(k))
    if candidate.get("method") == "auto" and candidate.get("chosen"):
        kind += f" (chose {candidate['chosen']} of {candidate.get('tried', 1)})"
    parts = [_short(candidate.get("sha256")) or "no model", kind]
    if candidate.get("size"):
        parts.append(f"{candidate['size']}, ratio {_number(candidate.get('sizeRatio'))}")
    if candidate.get("metric"):
        parts.append(
            f"{candidate['metric']} {_number(candidate.get('value'))} "
            f"(baseline {_number(candidate.get('baseline'))}, drop {_number(candidate.get('drop'))})"
        )
    parts.append("stored result reused (CacheHit)" if candidate.get("cacheHit") else "computed by its Job")
    lines = ["Candidate:     " + " | ".join(parts)]
    gates = summary.get("gates") or []
    if gates:
        rows = [["GATE", "THRESHOLD", "ACTUAL", "RESULT"]]
        rows += [
            [g["name"], _number(g["threshold"]), _number(g["actual"]), "✔ passed" if g["passed"] else "✖ failed"]
            for g in gates
        ]
        lines += _table(rows)
    return lines


def _analysis_lines(summary: Mapping[str, Any], now: datetime) -> list[str]:
    """A shadow or canary analysis: its phase (and canary step), the live figures, since when, and its
    message."""
    analysis = summary.get("analysis")
    if not analysis:
        return []
    figures = [f"{analysis.get('requests', 0)} mirrored requests"]
    for key, label in (
        ("agreement", "agreement"),
        ("meanAbsoluteDifference", "mean abs diff"),
        ("p95LatencyRatio", "p95 latency ratio"),
        ("errorRate", "error rate"),
    ):
        if analysis.get(key) is not None:
            figures.append(f"{label} {_number(analysis[key])}")
    since = f"started {_age(analysis.get('startedAt'), now)} ago"
    step = ""
    if analysis.get("step") is not None:
        step = f" step {analysis['step']}/{analysis.get('steps')} ({analysis.get('trafficPercent', 0)}% of pods)"
    return [
        f"Analysis:      {analysis.get('phase')} {_short(analysis.get('candidateSha256'))}{step} | "
        + ", ".join(figures) + f" | {since}",
        f"               {analysis.get('message', '')}",
    ]


def _tree_rows(
    node: Mapping[str, Any], now: datetime, prefix: str = "", last: bool = True, root: bool = True
) -> list[list[str]]:
    branch = "" if root else prefix + ("└──" if last else "├──")
    rows = [[branch + node["name"], node["kind"], node["status"], _age(node.get("created"), now), node.get("info", "")]]
    inner = "" if root else prefix + ("   " if last else "│  ")
    children = node.get("children") or []
    for i, child in enumerate(children):
        rows += _tree_rows(child, now, inner, i == len(children) - 1, root=False)
    return rows


def render(summary: Mapping[str, Any], now: datetime) -> str:
    """The tree `kubectl optimodel get` draws, like `kubectl argo rollouts get rollout`."""
    verdict = summary["health"]
    serving = summary.get("serving") or {}
    lines = [
        f"Name:          {summary['name']}",
        f"Namespace:     {summary['namespace']}",
        f"Health:        {ICONS.get(verdict['status'], '◌')} {verdict['status']}: {verdict['message']}",
        f"Phase:         {summary.get('phase') or 'not judged yet'}",
        f"Generation:    {summary['generation']} (observed {summary.get('observedGeneration')})",
        f"Serving:       {_short(serving.get('sha256')) or 'nothing'}"
        + (f" on {serving.get('ready')} ready pods, {serving['url']}" if serving.get("url") else ""),
        *_candidate_lines(summary),
        *_analysis_lines(summary, now),
    ]
    conditions = summary.get("conditions") or []
    if conditions:
        rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
        rows += [
            [c["type"], c["status"], c.get("reason", ""), _age(c.get("lastTransitionTime"), now), c.get("message", "")]
            for c in conditions
        ]
        lines += ["", "Conditions:", *_table(rows)]
    lines += ["", *_table([["NAME", "KIND", "STATUS", "AGE", "INFO"], *_tree_rows(summary["tree"], now)], indent="")]
    events = summary.get("events") or []
    if events:
        rows = [["AGE", "TYPE", "REASON", "OBJECT", "MESSAGE"]]
        rows += [
            [
                _age(e["time"], now),
                e["type"],
                e["reason"] + (f" (x{e['count']})" if e["count"] > 1 else ""),
                e["object"],
                e["message"],
            ]
            for e in events
        ]
        lines += ["", "Events:", *_table(rows)]
    return "\n".join(lines) + "\n"
