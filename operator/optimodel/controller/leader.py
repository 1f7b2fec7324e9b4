"""Leader election on a coordination.k8s.io Lease: of several operators only one acts. Controller layer.

Why a Lease and not kopf's peering: peering pauses *every* operator when two have the same priority
(the replicas of one Deployment do), so two replicas would both stand still; a newcomer with a
higher priority takes over from a working operator in the middle of its work; each peer's liveness
is judged by comparing its `lastseen` wall-clock time with the reader's own clock; and it needs
kopf's own CRD installed. A Lease needs none of that and is what Kubernetes' own controllers use
(client-go's leaderelection), with the same rules here:

- a candidate takes the Lease when it does not exist, has no holder, or has not changed for its
  `leaseDurationSeconds` *as measured on the candidate's own monotonic clock* since the candidate
  first saw its current version (no clocks are compared across machines);
- every write carries the `resourceVersion` read, so of two candidates racing, one gets 409;
- the leader renews every `RETRY_SECONDS`; a leader that could not renew for `RENEW_DEADLINE_SECONDS`
  (shorter than the lease) exits at once, before anyone else may take the Lease: a partitioned or
  paused leader never acts beside its successor (the process restarts and stands by);
- a leader that stops cleanly releases the Lease (no holder), so the next one takes it within a
  retry period instead of a lease duration.

The election runs before kopf starts: a standby operator has no watches and runs no handler. kopf's
liveness endpoint only starts with kopf, so while standing by the operator answers `/healthz` itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

LEASE_DURATION_SECONDS = 15
RENEW_DEADLINE_SECONDS = 10
RETRY_SECONDS = 2


def default_identity() -> str:
    """Host name (the pod's name in a cluster), process id and a random part: unique per process."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """What the election reads of a Lease."""

    holder: str | None
    duration_seconds: int
    version: str  # metadata.resourceVersion: changes with every write, renewals included
    transitions: int
    acquire_time: str | None


class Candidate:
    """Whether this process may take the Lease now, from what it has seen of it on its own clock."""

    def __init__(self, identity: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.identity, self.clock = identity, clock
        self._seen_version: str | None = None
        self._seen_at = 0.0

    def may_take(self, record: LeaseRecord | None) -> bool:
        if record is None:
            return True
        now = self.clock()
        if record.version != self._seen_version:  # the holder wrote: it was alive just now
            self._seen_version, self._seen_at = record.version, now
        if not record.holder or record.holder == self.identity:
            return True
        return now >= self._seen_at + record.duration_seconds


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    acquired = spec.acquire_time
    return LeaseRecord(
        holder=spec.holder_identity or None,
        duration_seconds=spec.lease_duration_seconds or LEASE_DURATION_SECONDS,
        version=lease.metadata.resource_version,
        transitions=spec.lease_transitions or 0,
        acquire_time=acquired.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if acquired is not None else None,
    )


class LeaderElection:
    """Acquire, hold and release the Lease `namespace/name` for `identity`."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.candidate = Candidate(identity)
        self.on_change = on_change
        self.last_attempt = time.monotonic()  # for the standby's liveness: the loop still turns
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def identity(self) -> str:
        return self.candidate.identity

    def _read(self) -> LeaseRecord | None:
        try:
            return _record(self.leases.read_namespaced_lease(self.name, self.namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _body(self, record: LeaseRecord | None, holder: str | None, duration: int) -> dict[str, Any]:
        now = micro_time()
        mine = record is not None and record.holder == self.identity
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": record.acquire_time if mine and record is not None and holder else now,
            "renewTime": now,
            "leaseTransitions": (record.transitions if record else 0) + (0 if mine or not holder else 1),
        }
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record is not None:
            metadata["resourceVersion"] = record.version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this process holds the Lease after it (taken or renewed)."""
        self.last_attempt = time.monotonic()
        record = self._read()
        if not self.candidate.may_take(record):
            return False
        body = self._body(record, self.identity, LEASE_DURATION_SECONDS)
        try:
            if record is None:
                self.leases.create_namespaced_lease(self.namespace, body)
            else:
                self.leases.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            if error.status in (404, 409):  # another candidate wrote first (or deleted it): next round
                return False
            raise
        return True

    def acquire(self) -> None:
        """Block until this process leads, then keep renewing in a thread of its own."""
        log.info("waiting to lead: Lease %s/%s, identity %s", self.namespace, self.name, self.identity)
        while not self._try():
            time.sleep(RETRY_SECONDS)
        log.info("leading: Lease %s/%s taken by %s", self.namespace, self.name, self.identity)
        self.on_change(True)
        self._renewer = threading.Thread(target=self._renew, name="lease-renewer", daemon=True)
        self._renewer.start()

    def _try(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as error:  # an API outage: keep trying; the leader's deadline decides
            log.warning("Lease %s/%s: %s", self.namespace, self.name, error)
            return False

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(RETRY_SECONDS):
            if self._try():
                renewed = time.monotonic()
            elif time.monotonic() - renewed >= RENEW_DEADLINE_SECONDS or self._taken_by_other():
                self.lost()
                return

    def _taken_by_other(self) -> bool:
        try:
            record = self._read()
        except Exception:
            return False
        return record is not None and record.holder not in (None, self.identity)

    def lost(self) -> None:
        """Leadership lost while acting: stop at once, before another leader's work overlaps ours."""
        log.error("leadership lost (Lease %s/%s): exiting so that only the new leader acts", self.namespace, self.name)
        self.on_change(False)
        logging.shutdown()
        os._exit(1)

    def release(self) -> None:
        """Stop renewing and hand the Lease back (no holder), so a standby takes it at once."""
        self._stop.set()
        if self._renewer is None:
            return
        self._renewer.join(timeout=RETRY_SECONDS + 30)
        try:
            record = self._read()
            if record is not None and record.holder == self.identity:
                self.leases.replace_namespaced_lease(self.name, self.namespace, self._body(record, None, 1))
                log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as error:  # the next leader waits out the lease instead
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, error)
        self.on_change(False)


@contextmanager
def standby_health(port: int, election: LeaderElection) -> Iterator[None]:
    """`GET /healthz` on kopf's port while standing by: 200 while the election loop turns, else 503.

    kopf serves the port only once it runs; without this the kubelet would restart a standby
    operator over and over for failing its liveness probe.
    """
    if not port:
        yield
        return

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            stale = time.monotonic() - election.last_attempt > LEASE_DURATION_SECONDS + 30
            code = 404 if self.path != "/healthz" else 503 if stale else 200
            body = b'{"standby": true}' if code == 200 else b"{}"
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:  # a line per probe drowns the rest
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Health)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
