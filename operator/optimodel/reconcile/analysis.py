"""The analysis on live traffic: serving pods' /metrics -> figures -> a verdict. Pure layer.

Under strategies shadow and canary the serving pods mirror live requests to the candidate and
count, per candidate sha256, how its answers compare (`optimodel.serve.mirror`). The controller
fetches their /metrics text; everything after that is here: parse (the text comes from pods and is
treated as hostile: bounded, every line checked, anything odd ignored), add up over pods, and judge
with three outcomes as Argo Rollouts does: passed (every threshold holds after `minRequests`),
failed (one threshold fails after `minRequests`, or `maxSeconds` passed first), or running (not
enough requests yet).

The verdict is final: it is written to status with the figures it was made on, and a later
reconcile keeps it for the same candidate instead of judging again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from optimodel.spec import Analysis

MAX_METRICS_BYTES = 2 * 1024 * 1024  # one pod's /metrics: more is not a server of ours
MAX_LINES = 20_000
MAX_BUCKETS = 200
PREFIX = "optimodel_shadow_"
_LINE = re.compile(r'^(optimodel_shadow_[a-z_]+)\{([^{}]*)\} (\S+)$')
_LABEL = re.compile(r'([a-z_]+)="([^"\\]*)"')
_WORKER = re.compile(r'^optimodel_worker\{worker="([0-9]{1,4})"\} 1\.0$', re.MULTILINE)

Verdict = Literal["Passed", "Failed", "Running"]


@dataclass
class Figures:
    """The mirrored traffic of one candidate, added up over the serving pods."""

    requests: float = 0.0
    errors: float = 0.0
    compared: float = 0.0
    agreeing: float = 0.0
    difference: float = 0.0
    serving_buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    candidate_buckets: dict[float, float] = field(default_factory=dict)
    pods: int = 0  # serving pods whose figures are in here

    @property
    def total(self) -> float:
        return self.requests + self.errors

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.total if self.total else None

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.compared if self.compared else None

    @property
    def mean_absolute_difference(self) -> float | None:
        return self.difference / self.compared if self.compared else None

    @property
    def serving_p95(self) -> float | None:
        return quantile(self.serving_buckets, 0.95)

    @property
    def candidate_p95(self) -> float | None:
        return quantile(self.candidate_buckets, 0.95)

    @property
    def latency_ratio(self) -> float | None:
        serving, candidate = self.serving_p95, self.candidate_p95
        return candidate / serving if serving and candidate is not None else None


_COUNTERS = {
    "optimodel_shadow_requests_total": "requests",
    "optimodel_shadow_errors_total": "errors",
    "optimodel_shadow_compared_total": "compared",
    "optimodel_shadow_agreeing_total": "agreeing",
    "optimodel_shadow_absolute_difference_total": "difference",
}
_BUCKETS = {
    "optimodel_shadow_serving_inference_seconds_bucket": "serving_buckets",
    "optimodel_shadow_candidate_inference_seconds_bucket": "candidate_buckets",
}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def add_pod(figures: Figures, text: str, candidate: str) -> None:
    """Add one pod's /metrics text (already cut at `MAX_METRICS_BYTES`) for `candidate` to `figures`."""
    figures.pods += 1
    for line in text.splitlines()[:MAX_LINES]:
        if not line.startswith(PREFIX):
            continue
        match = _LINE.match(line)
        value = _number(match.group(3)) if match else None
        if match is None or value is None:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        if labels.get("candidate") != candidate:
            continue
        name = match.group(1)
        if name in _COUNTERS:
            setattr(figures, _COUNTERS[name], getattr(figures, _COUNTERS[name]) + value)
        elif name in _BUCKETS:
            bound = _number(labels.get("le", "")) if labels.get("le") != "+Inf" else math.inf
            buckets: dict[float, float] = getattr(figures, _BUCKETS[name])
            if bound is not None and (bound in buckets or len(buckets) < MAX_BUCKETS):
                buckets[bound] = buckets.get(bound, 0.0) + value


def worker_of(text: str) -> str | None:
    """Which server process of a pod answered (`optimodel_worker`), None when the text does not say."""
    match = _WORKER.search(text)
    return match.group(1) if match else None


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated within its bucket (as PromQL's
    histogram_quantile does); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = max(buckets.values())
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = max(buckets[bound], below)  # a hostile text may not be cumulative
        if count >= rank:
            if math.isinf(bound):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    message: str


def elapsed_seconds(since: str, now: str) -> float:
    """Seconds between two RFC 3339 times (as status writes them)."""
    return (datetime.fromisoformat(now) - datetime.fromisoformat(since)).total_seconds()


def describe(figures: Figures | None, higher_is_better: bool) -> str:
    """The figures in one line, for status messages and Events."""
    if figures is None or not figures.total:
        return "no mirrored request answered yet"
    parts = [f"{figures.total:.0f} mirrored requests"]
    if higher_is_better and figures.agreement is not None:
        parts.append(f"agreement {figures.agreement:.4f}")
    if not higher_is_better and figures.mean_absolute_difference is not None:
        parts.append(f"mean absolute difference {figures.mean_absolute_difference:.6g}")
    if figures.latency_ratio is not None:
        parts.append(f"p95 latency ratio {figures.latency_ratio:.2f}")
    parts.append(f"error rate {figures.error_rate or 0.0:.4f}")
    return ", ".join(parts)


def _failures(analysis: Analysis, figures: Figures) -> list[str]:
    """Every threshold the figures break, each with its numbers."""
    failed = []
    error_rate = figures.error_rate or 0.0
    if error_rate > analysis.max_error_rate:
        failed.append(f"maxErrorRate: actual {error_rate:.4f} vs threshold {analysis.max_error_rate:g}")
    agreement = figures.agreement
    if analysis.min_agreement is not None and (agreement is None or agreement < analysis.min_agreement):
        shown = "none" if agreement is None else f"{agreement:.4f}"
        failed.append(f"minAgreement: actual {shown} vs threshold {analysis.min_agreement:g}")
    difference = figures.mean_absolute_difference
    limit = analysis.max_mean_absolute_difference
    if limit is not None and (difference is None or difference > limit):
        shown = "none" if difference is None else f"{difference:.6g}"
        failed.append(f"maxMeanAbsoluteDifference: actual {shown} vs threshold {limit:g}")
    ratio = figures.latency_ratio
    if analysis.max_p95_latency_ratio is not None and (ratio is None or ratio > analysis.max_p95_latency_ratio):
        shown = "none" if ratio is None else f"{ratio:.2f}"
        failed.append(f"maxP95LatencyRatio: actual {shown} vs threshold {analysis.max_p95_latency_ratio:g}")
    return failed


def judge(
    analysis: Analysis, figures: Figures | None, elapsed: float, higher_is_better: bool, before: float = 0.0
) -> Judgement:
    """Passed, Failed or Running, with the figures and, on failure, every threshold that broke.

    `before`: mirrored requests counted before this judgement's window opened (a canary step's
    start); the window needs `minRequests` more, and the thresholds apply to all the figures.
    """
    summary = describe(figures, higher_is_better)
    counted = max(0.0, figures.total - before) if figures is not None else 0.0
    if figures is not None and counted >= analysis.min_requests:
        failed = _failures(analysis, figures)
        if failed:
            return Judgement("Failed", f"{'; '.join(failed)} ({summary})")
        if elapsed < analysis.min_seconds:
            left = analysis.min_seconds - elapsed
            return Judgement("Running", f"every threshold holds, judged {left:.0f} s more (minSeconds) ({summary})")
        return Judgement("Passed", f"every threshold held ({summary})")
    if elapsed >= analysis.max_seconds:
        return Judgement(
            "Failed",
            f"maxSeconds: {analysis.max_seconds} s passed with {counted:.0f}/{analysis.min_requests} mirrored "
            f"requests ({summary})",
        )
    return Judgement("Running", f"{counted:.0f}/{analysis.min_requests} mirrored requests so far ({summary})")
