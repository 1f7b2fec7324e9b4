"""The report: one JSON object written by the Job, printed by `optimodel run`, copied into status.

Pure layer. Keys are camelCase on the wire (DESIGN.md, "The report").
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SourceInfo(Wire):
    uri: str
    size_bytes: int
    sha256: str


class ArtifactInfo(Wire):
    uri: str
    size_bytes: int
    gzip_bytes: int
    sha256: str


class Metrics(Wire):
    metric: str
    baseline: float
    optimized: float
    drop: float = Field(description="How much worse than the baseline, positive when worse.")
    size_ratio: float
    latency_p50_ms: float
    latency_p95_ms: float
    baseline_latency_p50_ms: float | None = None
    sparsity: float | None = None
    evaluated_samples: int | None = None


class GateResult(Wire):
    name: str
    threshold: float
    actual: float
    passed: bool

    def describe(self) -> str:
        """`maxMetricDrop: 0.068 > 0.01` — the failing gate and its numbers, for status and events."""
        relation = {True: "within", False: "beyond"}[self.passed]
        return f"{self.name} {relation} limit: actual {self.actual:.6g}, threshold {self.threshold:.6g}"


class Candidate(Wire):
    name: str
    method: str
    quantization: str | None = None
    artifact: ArtifactInfo | None = None
    metrics: Metrics | None = None
    gates: list[GateResult] = Field(default_factory=list)
    passed: bool = False
    error: str | None = None
    duration_seconds: float | None = None


class Report(Wire):
    key: str = Field(description="The content key the result is stored under.")
    source: SourceInfo
    artifact: ArtifactInfo | None = None
    method: str
    quantization: str | None = None
    metrics: Metrics | None = None
    gates: list[GateResult] = Field(default_factory=list)
    passed: bool
    cache_hit: bool = False
    candidates: list[Candidate] = Field(default_factory=list)
    chosen: str | None = None
    tools: dict[str, str] = Field(default_factory=dict)
    duration_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        return cls.model_validate_json(text)

    def failed_gates(self) -> list[GateResult]:
        return [gate for gate in self.gates if not gate.passed]
