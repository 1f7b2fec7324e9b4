"""Reading the serving pods' /metrics for a shadow analysis. Adapter (I/O edge): stdlib HTTP only.

The operator runs in the cluster and reaches pods by their IP, as Prometheus does (a NetworkPolicy
that isolates the serving pods must let the operator's pods in on the serving port). The pods'
answers are treated as hostile: a short timeout, a bounded read, and a text that is only parsed
by `reconcile.analysis`. A pod that does not answer is left out of this look.

A pod with several server processes (`spec.serving.workers`) answers each connection from one of
them, each with its own counters: the pod is asked again, on new connections, until every worker
answered once (or a few tries per worker passed), and each worker's text counts once.
"""

from __future__ import annotations

import logging
import urllib.request

from optimodel.reconcile.analysis import MAX_METRICS_BYTES, worker_of

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 2.0
TRIES_PER_WORKER = 4


def _url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/metrics"


def fetch(ip: str, port: int) -> str | None:
    """One /metrics answer, or None when the pod does not answer sensibly."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod IPs never go via a proxy
    try:
        with opener.open(_url(ip, port), timeout=TIMEOUT_SECONDS) as response:
            body: bytes = response.read(MAX_METRICS_BYTES + 1)
    except (OSError, ValueError) as error:
        log.info("no metrics from pod %s:%d: %s", ip, port, error)
        return None
    if len(body) > MAX_METRICS_BYTES:
        log.warning("pod %s:%d answered more than %d bytes of metrics: ignored", ip, port, MAX_METRICS_BYTES)
        return None
    return body.decode("utf-8", errors="replace")


def pod_texts(ip: str, port: int, workers: int) -> list[str]:
    """The /metrics text of every server process of one pod that answered."""
    texts: dict[str | None, str] = {}
    for _ in range(TRIES_PER_WORKER * workers):
        text = fetch(ip, port)
        if text is None:
            break
        texts.setdefault(worker_of(text), text)
        if len(texts) >= workers:
            break
    return list(texts.values())
