"""`optimodel run --plot`: size against metric for every candidate, gates as lines. Optimizer layer.

A search is easier to trust when its trade-off is visible: each candidate is a point (marker
area grows with p95 latency), the gates bound the acceptable region, the chosen one is starred.
"""

from __future__ import annotations

from pathlib import Path

from optimodel.optimize.native_logs import quiet_python_loggers
from optimodel.report import Report
from optimodel.spec import Gates, Metric


def plot_candidates(report: Report, gates: Gates, path: Path) -> Path:
    quiet_python_loggers()  # also when a stored result is reused and TensorFlow (tf.py) never loaded
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    judged = [c for c in report.candidates if c.metrics is not None and c.artifact is not None]
    for candidate in judged:
        assert candidate.metrics is not None and candidate.artifact is not None
        size_mb = candidate.artifact.size_bytes / 1e6
        area = 40 + 400 * min(candidate.metrics.latency_p95_ms, 10.0) / 10.0
        color = "tab:green" if candidate.passed else "tab:red"
        axes.scatter(size_mb, candidate.metrics.optimized, s=area, color=color, alpha=0.6, edgecolors="black")
        label = f"{candidate.name}\np95 {candidate.metrics.latency_p95_ms:.2f} ms"
        axes.annotate(label, (size_mb, candidate.metrics.optimized), textcoords="offset points", xytext=(8, 6),
                      fontsize=8)
        if candidate.name == report.chosen:
            axes.scatter(size_mb, candidate.metrics.optimized, marker="*", s=260, color="gold",
                         edgecolors="black", zorder=3, label=f"chosen: {candidate.name}")
    if judged and judged[0].metrics is not None:
        metric = Metric(judged[0].metrics.metric)
        baseline = judged[0].metrics.baseline
        axes.axhline(baseline, color="gray", linestyle=":", label=f"source {metric}: {baseline:.4f}")
        if gates.max_metric_drop is not None:
            bound = baseline - gates.max_metric_drop if metric.higher_is_better else baseline + gates.max_metric_drop
            axes.axhline(bound, color="tab:orange", linestyle="--", label="maxMetricDrop")
        for name, value in (("minMetric", gates.min_metric), ("maxMetric", gates.max_metric)):
            if value is not None:
                axes.axhline(value, color="tab:purple", linestyle="--", label=name)
        axes.set_ylabel(str(metric))
    if gates.max_size is not None:
        axes.axvline(gates.max_size / 1e6, color="tab:blue", linestyle="--", label="maxSizeBytes")
    if gates.max_size_ratio is not None:
        axes.axvline(gates.max_size_ratio * report.source.size_bytes / 1e6, color="tab:cyan", linestyle="--",
                     label="maxSizeRatio")
    axes.set_xlabel("artifact size (MB)")
    axes.set_title(f"{len(judged)} candidates, {'chosen: ' + report.chosen if report.chosen else 'none passed'}")
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
