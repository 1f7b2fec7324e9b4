"""Prometheus metrics of the operator, served on their own port. Controller layer.

Each metric is fed from the pure outcome (its Events and status), so what is counted is exactly
what users see as transitions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from optimodel.reconcile import Outcome
from optimodel.reconcile import reasons as r


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "optimodel_reconciles",
            "Reconciles of OptimizedModels by result.",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "optimodel_reconcile_duration_seconds", "Time one reconcile took.", registry=self.registry
        )
        self.jobs_created = Counter(
            "optimodel_jobs_created", "Optimization Jobs created.", registry=self.registry
        )
        self.job_seconds = Histogram(
            "optimodel_job_duration_seconds",
            "Optimization Job run time, start to completion.",
            buckets=(5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=self.registry,
        )
        self.gate_failures = Counter(
            "optimodel_gate_failures",
            "Candidates that failed a gate, by gate.",
            ["gate"],
            registry=self.registry,
        )
        self.rollouts = Counter(
            "optimodel_rollouts", "Rollouts of a new model to a serving Deployment.", registry=self.registry
        )
        self.phases = Gauge(
            "optimodel_models", "OptimizedModels by phase.", ["phase"], registry=self.registry
        )
        self.leader = Gauge(
            "optimodel_leader",
            "1 while this operator holds the leader Lease (or runs without election), 0 while it stands by.",
            registry=self.registry,
        )
        self._phase_of: dict[tuple[str, str], str] = {}

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def observe(self, key: tuple[str, str], outcome: Outcome, job_seconds: float | None) -> None:
        reasons = {event.reason for event in outcome.events}
        if r.GATES_FAILED_REASON in reasons:
            for gate in outcome.status.gates:
                if not gate.passed:
                    self.gate_failures.labels(gate.name).inc()
        if job_seconds is not None and {r.RESULT_STORED, r.CACHE_HIT} & reasons:
            self.job_seconds.observe(job_seconds)
        self.set_phase(key, outcome.status.phase)

    def set_phase(self, key: tuple[str, str], phase: str | None) -> None:
        old = self._phase_of.pop(key, None)
        if old is not None:
            self.phases.labels(old).dec()
        if phase is not None:
            self._phase_of[key] = phase
            self.phases.labels(phase).inc()
