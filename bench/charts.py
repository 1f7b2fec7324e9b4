"""The PNG charts of bench/RESULTS.md, drawn with matplotlib from the benchmarks' JSON documents
(bench/results.py passes them in). One function per chart; a benchmark not run draws nothing.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

OURS, PEER, FLOAT = "#1f77b4", "#d62728", "#7f7f7f"


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def size_vs_metric(engine: dict[str, Any], path: Path) -> None:
    """Bytes against the metric for every method, one panel per model, with the line at 25 % of
    float32's bytes that 8-bit weights cannot go below (without pruning and compression)."""
    models = engine["figures"]["models"]
    figure, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        float32 = model["methods"][0]
        points: dict[tuple[float, float], list[str]] = {}  # methods that land on one spot share a label
        for row in model["methods"]:
            x, y = row["bytes"] / float32["bytes"], row["metric"]
            points.setdefault((round(x, 2), round(y, 4)), []).append(row["method"])
            axis.scatter([x], [y], color=FLOAT if row["method"] == "float32" else OURS, zorder=3)
        for (x, y), names in points.items():
            axis.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        axis.axvline(0.25, color=PEER, linestyle="--", linewidth=1)
        axis.text(0.255, axis.get_ylim()[0], " 8-bit weights: 25 % of float32", color=PEER, fontsize=8,
                  va="bottom")
        axis.set_xlim(0, 1.1)
        axis.set_xlabel("bytes / float32 TFLite bytes")
        axis.set_ylabel(model["metric"])
        axis.set_title(model["model"])
        axis.grid(alpha=0.3)
    _save(figure, path)


def latency(engine: dict[str, Any], path: Path) -> None:
    """p50 latency of every method against float32's, at 1 and 2 threads, one panel per model."""
    models = engine["figures"]["models"]
    figure, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        rows = model["methods"][1:]
        float32 = model["methods"][0]["latencyMs"]
        names = [row["method"] for row in rows]
        for offset, threads, color in ((-0.2, "1", OURS), (0.2, "2", "#9ecae1")):
            ratios = [row["latencyMs"][threads]["p50"] / float32[threads]["p50"] for row in rows]
            axis.bar([i + offset for i in range(len(rows))], ratios, width=0.4, color=color,
                     label=f"{threads} thread{'s' if threads == '2' else ''}")
        axis.axhline(1.0, color=FLOAT, linestyle="--", linewidth=1)
        axis.set_xticks(range(len(rows)), names, rotation=20, ha="right", fontsize=8)
        axis.set_ylabel("p50 latency / float32 p50 (below 1: faster)")
        axis.set_title(model["model"])
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    _save(figure, path)


def _concurrencies(levels: dict[str, list[dict[str, float]]]) -> list[str]:
    """The levels in numeric order (JSON keys are strings, written sorted as strings)."""
    return sorted(levels, key=int)


def _medians(levels: dict[str, list[dict[str, float]]], key: str) -> list[float]:
    return [statistics.median(run[key] for run in levels[c]) for c in _concurrencies(levels)]


def serving(serve: dict[str, Any], path: Path) -> None:
    """Throughput and p99 against concurrency, optimodel beside KServe, one row per model."""
    models = serve["figures"]["models"]
    figure, axes = plt.subplots(len(models), 2, figsize=(10, 3.6 * len(models)), squeeze=False)
    for row, model in zip(axes, models, strict=True):
        for label, levels in model["servers"].items():
            concurrency = [int(c) for c in _concurrencies(levels)]
            color = OURS if label == "optimodel" else PEER
            name = "optimodel" if label == "optimodel" else "KServe"
            row[0].plot(concurrency, _medians(levels, "rps"), marker="o", color=color, label=name)
            row[1].plot(concurrency, _medians(levels, "p99_ms"), marker="o", color=color, label=name)
        for axis, ylabel in ((row[0], "requests/s"), (row[1], "p99 latency, ms")):
            axis.set_xscale("log", base=2)
            axis.set_xticks(concurrency, [str(c) for c in concurrency])
            axis.set_xlabel("concurrent clients")
            axis.set_ylabel(ylabel)
            axis.set_title(model["model"])
            axis.set_ylim(bottom=0)
            axis.legend(fontsize=8)
            axis.grid(alpha=0.3)
    _save(figure, path)


def operator(doc: dict[str, Any], path: Path) -> None:
    """Seconds until a fleet step is all Ready, and steady API requests per second, against size."""
    fleet = doc["figures"]["fleet"]
    sizes = [step["resources"] for step in fleet]
    figure, (ready, requests) = plt.subplots(1, 2, figsize=(10, 3.8))
    ready.plot(sizes, [step["secondsToReady"] for step in fleet], marker="o", color=OURS)
    for step in fleet:
        ready.annotate(f"+{step['created']}", (step["resources"], step["secondsToReady"]),
                       textcoords="offset points", xytext=(4, -10), fontsize=8)
    ready.set_ylabel("seconds until the new ones are all Ready")
    requests.plot(sizes, [step["steadyRequestsPerSecond"] for step in fleet], marker="o", color=OURS)
    requests.set_ylabel("operator API requests/s, nothing changing")
    for axis in (ready, requests):
        axis.set_xlabel("OptimizedModels in the cluster")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    _save(figure, path)


def cluster(doc: dict[str, Any], path: Path) -> None:
    """Warm cluster start, pod start (median and max) and a Service's first answer, in seconds."""
    figures = doc["figures"]
    pods = figures["podStartSeconds"]
    labels = ["cluster warm start", "pod start (median)", "pod start (max)", "Service first answer"]
    values = [figures["warmStartSeconds"], statistics.median(pods), max(pods), figures["serviceAnswerSeconds"]]
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.barh(labels, values, color=OURS)
    for index, value in enumerate(values):
        axis.text(value, index, f" {value:.2f} s", va="center", fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("seconds (log scale)")
    axis.invert_yaxis()
    _save(figure, path)


def draw_all(results: dict[str, dict[str, Any]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if "engine" in results:
        size_vs_metric(results["engine"], directory / "size-vs-metric.png")
        latency(results["engine"], directory / "latency.png")
    if "serve" in results:
        serving(results["serve"], directory / "serving.png")
    if "operator" in results:
        operator(results["operator"], directory / "operator.png")
    if "devcluster" in results:
        cluster(results["devcluster"], directory / "cluster.png")
