"""The before/after table `optimodel run` prints. Pure: formats a Report, no I/O."""

from __future__ import annotations

from optimodel.quantity import format_bytes
from optimodel.report import Candidate, Report


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(report: Report) -> list[tuple[str, str]]:
    rows = [("source", report.source.uri), ("result", report.key[:16] + (" (reused)" if report.cache_hit else ""))]
    if report.artifact is not None and report.metrics is not None:
        metrics = report.metrics
        ratio = report.artifact.size_bytes / report.source.size_bytes
        rows += [
            ("method", report.chosen or report.method),
            ("size", f"{format_bytes(report.source.size_bytes)} -> {format_bytes(report.artifact.size_bytes)} "
                     f"({ratio:.0%})"),
            ("gzip size", format_bytes(report.artifact.gzip_bytes)),
            (metrics.metric, f"{_fmt(metrics.baseline)} -> {_fmt(metrics.optimized)} (drop {metrics.drop:+.4f})"),
            ("latency p50", f"{_fmt(metrics.baseline_latency_p50_ms, 3)} ms -> {_fmt(metrics.latency_p50_ms, 3)} ms"),
            ("latency p95", f"{_fmt(metrics.latency_p95_ms, 3)} ms"),
        ]
        if metrics.sparsity is not None:
            rows.append(("sparsity", f"{metrics.sparsity:.3f}"))
        rows.append(("artifact", report.artifact.uri))
    else:
        rows.append(("artifact", "none: no candidate passed every gate"))
    return rows


def _gate_lines(candidate_gates: list, indent: str = "  ") -> list[str]:
    return [f"{indent}{'PASS' if gate.passed else 'FAIL'}  {gate.name:<16} actual {gate.actual:<12.6g} "
            f"threshold {gate.threshold:.6g}" for gate in candidate_gates]


def _candidate_line(candidate: Candidate) -> str:
    if candidate.error:
        return f"  {candidate.name:<14} {candidate.error}"
    metrics = candidate.metrics
    size = format_bytes(candidate.artifact.size_bytes) if candidate.artifact else "-"
    verdict = "passed" if candidate.passed else "failed"
    detail = f"{metrics.metric} {metrics.optimized:.4f}, p95 {metrics.latency_p95_ms:.3f} ms" if metrics else ""
    return f"  {candidate.name:<14} {size:>9}  {detail}  {verdict}"


def render(report: Report) -> str:
    rows = _rows(report)
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if len(report.candidates) > 1:
        lines += ["", "candidates:"] + [_candidate_line(c) for c in report.candidates]
    lines += ["", "gates:"]
    lines += _gate_lines(report.gates) or ["  (none given)"]
    if report.artifact is None:
        for candidate in report.candidates:
            failed = [gate for gate in candidate.gates if not gate.passed]
            if failed:
                lines += [f"  {candidate.name}:"] + _gate_lines(failed, indent="    ")
    lines += ["", f"verdict: {'PASSED' if report.passed else 'FAILED'} ({report.duration_seconds:.1f} s)"]
    return "\n".join(lines)
