"""Writes the results page of the benchmarks, its charts and the README's figures, from the JSON the
benchmarks wrote (bench/*.py --json), so that no figure in the docs comes from anywhere else.

    .venv/bin/python bench/results.py [--results bench/results] [--page bench/RESULTS.md]
        [--readme README.md] [--check]

Every ratio on the page is one the benchmark measured in a single run (the peer or the baseline
interleaved with ours); the page says on what machine, when, and how loaded the machine was. The
README's block between `<!-- bench:begin -->` and `<!-- bench:end -->` is rewritten with the key
table and charts; `--check` writes nothing and fails when the page or that block is not what the
JSON renders to (a unit test runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.charts

from bench.charts import draw_all  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BENCHMARKS = ("engine", "serve", "mirror", "operator", "devcluster")
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"
IMAGE_NAMES = {"operator": "operator", "job": "optimizer", "serve": "serve"}  # by the role the chart gives each
FLOAT32 = "float32"

Results = dict[str, dict[str, Any]]


def load(directory: Path) -> Results:
    """Each benchmark's document, by name; a benchmark not run is absent."""
    return {name: json.loads((directory / f"{name}.json").read_text())
            for name in BENCHMARKS if (directory / f"{name}.json").exists()}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: with 5 samples p95 is the largest, no interpolation flattering it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; columns after the first are right-aligned (they hold figures)."""
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def times(ratio: float) -> str:
    return f"{ratio:.2f}x" + (" **slower**" if ratio > 1 else "")


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def provenance(results: Results) -> str:
    """On what machine and when each figure was measured, and how busy the machine was."""
    machines = {json.dumps(doc["machine"], sort_keys=True) for doc in results.values()}
    lines = []
    for machine in sorted(machines):
        m = json.loads(machine)
        lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memoryGiB']} GiB, Linux {m['kernel']}, "
                     f"Python {m['python']}, no GPU.")
    rows = [[f"`bench/{name}_bench.py`", doc["started"], doc["finished"],
             f"{doc['loadAverage']['before']} / {doc['loadAverage']['after']}"] for name, doc in results.items()]
    return "\n".join(lines) + "\n\n" + table(["benchmark", "started (UTC)", "finished", "load average before / after"],
                                             rows)


def method_rows(model: dict[str, Any]) -> list[list[str]]:
    rows = []
    float32 = model["methods"][0]
    for row in model["methods"]:
        one, two = row["latencyMs"]["1"], row["latencyMs"]["2"]
        rows.append([
            row["method"], f"{row['bytes']:,}", f"{row['bytes'] / float32['bytes']:.3f}", f"{row['gzipBytes']:,}",
            f"{row['metric']:.4f}", "-" if row["drop"] is None else f"{row['drop'] * 100:+.2f}",
            f"{one['p50']:.3f} ms ({spread(one['p50Rounds'])})", times(one["p50"] / float32["latencyMs"]["1"]["p50"]),
            f"{two['p50']:.3f} ms ({spread(two['p50Rounds'])})", times(two["p50"] / float32["latencyMs"]["2"]["p50"]),
            f"{row['conversionSeconds']:.1f} s",
        ])
    return rows


def engine_section(doc: dict[str, Any]) -> str:
    settings = doc["settings"]
    parts = [
        "## Optimization (`bench/engine_bench.py`)",
        "",
        f"Every method on each reference model; bytes against the model's own float32 TFLite file; the "
        f"metric on the held-out digits; p50 latency of single-sample inference, the median of "
        f"{settings['rounds']} rounds in which float32 and every method took turns (the spread of the rounds "
        "in brackets), so the ratio to float32 is a same-run figure.",
        "",
        "![bytes against accuracy per method](charts/size-vs-metric.png)",
        "![p50 latency per method against float32](charts/latency.png)",
    ]
    for model in doc["figures"]["models"]:
        parts += ["", f"### {model['model']}: source {model['sourceBytes']:,} bytes, {model['metric']} "
                  f"{model['methods'][0]['metric']:.4f} on {model['samples']} samples", ""]
        parts.append(table(["method", "bytes", "vs float32", "gzip bytes", model["metric"], "drop (points)",
                            "p50, 1 thread", "vs float32", "p50, 2 threads", "vs float32", "conversion"],
                           method_rows(model)))
    search = doc["figures"].get("search")
    if search:
        gates = ", ".join(f"{k} {v}" for k, v in settings["searchGates"].items())
        parts += ["", f"`method: auto` with gates {gates}, against running int8, dynamic and float16 each alone:", ""]
        parts.append(table(["model", "chosen", "candidates tried", "search", "each alone (sum)"],
                           [[s["model"], s["chosen"] or "none", str(s["tried"]), f"{s['searchSeconds']:.1f} s",
                             f"{s['aloneSeconds']:.1f} s"] for s in search]))
    return "\n".join(parts)


def serve_levels(model: dict[str, Any]) -> list[list[str]]:
    servers = model["servers"]
    ours, peer = servers["optimodel"], servers.get("kserve")
    rows = []
    for level in sorted(ours, key=int):  # JSON keys are strings, written sorted as strings
        runs = ours[level]
        row = [level, _server_cell(runs)]
        if peer is not None:
            ratios = [a["rps"] / b["rps"] for a, b in zip(runs, peer[level], strict=True)]
            p99 = _median(runs, "p99_ms") / _median(peer[level], "p99_ms")
            row += [_server_cell(peer[level]), f"{_median(runs, 'rps') / _median(peer[level], 'rps'):.2f}x",
                    f"{min(ratios):.2f}x-{max(ratios):.2f}x", f"{p99:.2f}"]
        rows.append(row)
    return rows


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _server_cell(runs: list[dict[str, float]]) -> str:
    errors = int(sum(run["errors"] for run in runs))
    return (f"{_median(runs, 'rps'):.0f} req/s, {_median(runs, 'p50_ms'):.2f} / {_median(runs, 'p99_ms'):.2f} ms"
            + (f", {errors} errors" if errors else ""))


def serve_section(doc: dict[str, Any]) -> str:
    settings = doc["settings"]
    parts = [
        "## Serving (`bench/serve_bench.py`)",
        "",
        f"`optimodel serve` ({' '.join(settings['optimodel'])}) against KServe's Python model server "
        f"({', '.join(settings['peer'])}; {' '.join(settings['kserve'])}) on "
        "the same full-int8 `.tflite`, v2 `infer` calls of one instance, closed-loop load from vegeta. Both servers "
        f"stay up and take turns level by level for {settings['rounds']} rounds of {settings['seconds']:g} s, the "
        "order flipped each round; medians of the rounds, and the range of the per-round throughput ratios.",
        "",
        "![throughput and p99 against concurrency, optimodel and KServe](charts/serving.png)",
    ]
    for model in doc["figures"]["models"]:
        parts += ["", f"### {model['model']} ({model['bytes']:,} bytes)", ""]
        parts.append(table(["concurrency", "optimodel: throughput, p50 / p99", "KServe: throughput, p50 / p99",
                            "throughput ratio", "per round", "p99 ratio"], serve_levels(model)))
    return "\n".join(parts)


MIRROR_SCENARIOS = {
    "baseline": "no mirror",
    "healthy": "healthy candidate",
    "hung": "hung candidate",
    "refused": "nothing listening",
}


def mirror_levels(scenarios: list[dict[str, Any]]) -> list[list[str]]:
    """Each scenario at each level, with its same-run ratios to the baseline (the rounds paired)."""
    baseline = next(s["levels"] for s in scenarios if s["scenario"] == "baseline")
    rows = []
    for scenario in scenarios:
        for level in sorted(scenario["levels"], key=int):
            runs, base = scenario["levels"][level], baseline[level]
            row = [MIRROR_SCENARIOS[scenario["scenario"]], level, _server_cell(runs)]
            if scenario["scenario"] == "baseline":
                rows.append(row + ["-"] * 4)
                continue
            ratios = [a["rps"] / b["rps"] for a, b in zip(runs, base, strict=True)]
            p99s = [a["p99_ms"] / b["p99_ms"] for a, b in zip(runs, base, strict=True)]
            rows.append(row + [
                f"{_median(runs, 'rps') / _median(base, 'rps'):.2f}x", f"{min(ratios):.2f}x-{max(ratios):.2f}x",
                f"{_median(runs, 'p50_ms') / _median(base, 'p50_ms'):.2f}x",
                f"{_median(runs, 'p99_ms') / _median(base, 'p99_ms'):.2f}x ({min(p99s):.2f}x-{max(p99s):.2f}x)",
            ])
    return rows


def mirror_counts(scenarios: list[dict[str, Any]]) -> list[list[str]]:
    """What each serving server's mirror did, from its own /metrics, and the CPU each answer cost it."""
    rows = []
    for scenario in scenarios:
        m = scenario["mirror"]
        cpu = f"{cpu_per_request_ms(scenario):.3f} ms"
        if scenario["scenario"] == "baseline":
            rows.append([MIRROR_SCENARIOS["baseline"], f"{m['answered']:,}"] + ["-"] * 4 + [cpu])
            continue
        uncounted = max(0, m["answered"] - m["mirrored"] - m["errors"] - m["dropped"])
        rows.append([MIRROR_SCENARIOS[scenario["scenario"]], f"{m['answered']:,}", f"{m['mirrored']:,}",
                     f"{m['errors']:,}", f"{m['dropped']:,}", f"{uncounted:,}", cpu])
    return rows


def cpu_per_request_ms(scenario: dict[str, Any]) -> float:
    return float(scenario["cpuSeconds"] / max(1, scenario["mirror"]["answered"]) * 1e3)


def mirror_cost(scenarios: list[dict[str, Any]]) -> str:
    """The serving server's CPU per request with each mirror, against the baseline's."""
    baseline = cpu_per_request_ms(next(s for s in scenarios if s["scenario"] == "baseline"))
    costs = [f"{MIRROR_SCENARIOS[s['scenario']]} {cpu_per_request_ms(s) - baseline:+.3f} ms "
             f"({cpu_per_request_ms(s) / baseline - 1:+.0%})" for s in scenarios if s["scenario"] != "baseline"]
    return "Serving CPU per request against the baseline's: " + ", ".join(costs) + "."


def mirror_section(doc: dict[str, Any]) -> str:
    figures, settings = doc["figures"], doc["settings"]
    scenarios = figures["scenarios"]
    healthy = next(s["mirror"] for s in scenarios if s["scenario"] == "healthy")
    candidate_cpu = figures["candidateCpuSeconds"] / max(1, figures["candidateAnswered"]) * 1e3
    return "\n".join([
        "## Shadow mirroring (`bench/mirror_bench.py`)",
        "",
        f"Does a client wait for the candidate? Four `optimodel serve` of {figures['model']} "
        f"({figures['bytes']:,} bytes, {' '.join(settings['optimodel'])}) differ only in their mirror "
        f"({' '.join(settings['mirror'])}; a queue of {settings['queueSize']}, {settings['senders']} senders, "
        f"{settings['timeoutSeconds']:g} s timeout): none; a healthy candidate ({settings['candidate']}); a hung "
        "candidate (a listener that accepts connections and never answers); a port where nothing listens. They take "
        f"turns level by level for {settings['rounds']} rounds of {settings['seconds']:g} s, the order flipped each "
        "round, closed-loop load from vegeta; medians of the rounds, ratios to the baseline, and the range of the "
        "per-round throughput ratios.",
        "",
        table(["mirror", "concurrency", "throughput, p50 / p99", "throughput vs baseline", "per round",
               "p50 vs baseline", "p99 vs baseline (per round)"], mirror_levels(scenarios)),
        "",
        "What each serving server's mirror did over the whole run (warm-ups included), from its own `/metrics` "
        "added up over its workers: requests it answered, copies the candidate answered "
        "(`optimodel_shadow_requests_total`), copies it failed (`optimodel_shadow_errors_total`: timeouts, "
        "refused connections), copies dropped (`optimodel_shadow_dropped_total`: the queue was full, or they were "
        "queued before a pause), and the rest: not copied while the mirror paused after an error, or still queued. "
        "The last column is the CPU time (user + system) of the serving server's processes over the run, per "
        "request it answered.",
        "",
        table(["mirror", "answered", "mirrored", "errors", "dropped", "not copied or queued", "CPU per request"],
              mirror_counts(scenarios)),
        "",
        f"The candidate answered {figures['candidateAnswered']:,} inference requests (the healthy mirror counted "
        f"{healthy['mirrored']:,}), at {candidate_cpu:.3f} ms of CPU each; the hung candidate accepted "
        f"{figures['hungConnectionsAccepted']:,} connections. {mirror_cost(scenarios)}",
        "",
        "How to read it: the candidate runs on the same two cores as the serving server, so with a healthy "
        "candidate every copy costs the machine a second inference and its HTTP: that share of the client's "
        "slowdown is CPU contention, which a candidate in its own pod on other cores would not cause. The other "
        "share stays wherever the candidate runs: the serving process encodes, sends and compares every copy on "
        "its own event loop, which is what its CPU per request beyond the baseline's measures. The hung candidate "
        "and the absent one cost the machine almost nothing: they are the clean check that a client never waits "
        "for the candidate.",
    ])


def operator_section(doc: dict[str, Any]) -> str:
    figures, settings = doc["figures"], doc["settings"]
    mib = 1024 * 1024
    to_deployment, to_ready = figures["jobToDeploymentSeconds"], figures["availableToReadySeconds"]
    n = len(to_deployment)
    rss = figures["serveProcessRssBytes"]
    parts = [
        "## The operator (`bench/operator_bench.py`)",
        "",
        f"The operator on the local cluster's real node, with its default resync intervals. {n} resources "
        "each run a real Job, one after another; then a fleet of resources whose result is already stored "
        f"(CacheHits: no Job) grows in steps over {settings.get('namespaces', 1)} namespace(s), the first "
        f"{settings['serving']} serving with one replica, the others with `replicas: 0`. Timestamps come "
        "from the benchmark's own watches; the API requests are the operator's, counted in the API server's "
        f"audit log over {settings['windowSeconds']:g} s once nothing changes. A settled resource costs two "
        "GETs a resync (60 s) and writes nothing; its full resync (every 600 s) applies its Service and "
        "Deployment again, unchanged, which a window that includes one counts as writes.",
        "",
        "![time to Ready and API requests against the number of resources](charts/operator.png)",
        "",
        table(["figure", "p50", "p95"], [
            [f"Job complete -> Deployment created (n={n})", f"{percentile(to_deployment, 0.5):.3f} s",
             f"{percentile(to_deployment, 0.95):.3f} s"],
            [f"Deployment available -> Ready (n={n})", f"{percentile(to_ready, 0.5):.3f} s",
             f"{percentile(to_ready, 0.95):.3f} s"],
        ]),
        "",
        table(["resources", "created at once", "to all Optimized", "to all Ready", "Jobs", "API requests/s, steady",
               "writes, steady", "operator peak RSS"],
              [[str(s["resources"]), str(s["created"]), f"{s['secondsToOptimized']:.1f} s",
                f"{s['secondsToReady']:.1f} s", str(s["jobs"]), f"{s['steadyRequestsPerSecond']:.2f}",
                str(s["steadyWrites"]), f"{s['operatorPeakRssBytes'] / mib:.0f} MiB"] for s in figures["fleet"]]),
    ]
    cycle = figures.get("cycle")
    if cycle is not None:
        parts += ["", f"Over {cycle['seconds']:g} s with all {cycle['resources']:,} resources settled, so that each "
                  f"one's full resync falls in the window once: {cycle['requestsPerSecond']:.2f} API requests/s, "
                  f"{cycle['writes']:,} writes; operator peak RSS {cycle['operatorPeakRssBytes'] / mib:.0f} MiB."]
    if max(to_deployment) < 0:
        parts += ["", "A negative delay is the operator acting before Kubernetes marks the Job `Complete`: it "
                  "reads the result once the Job's pod succeeded and the report is stored, while the Job "
                  "controller marks the Job `Complete` only after its pods have terminated."]
    if rss:
        parts += ["", f"One `optimodel serve` pod process: {max(rss) / mib:.0f} MiB RSS (largest of {len(rss)})."]
    return "\n".join(parts)


def devcluster_section(doc: dict[str, Any]) -> str:
    figures = doc["figures"]
    pods = figures["podStartSeconds"]
    builds = figures["coldBuildSeconds"]
    rows = [
        ["warm start: control plane, real node and CoreDNS Ready, images already imported",
         f"{figures['warmStartSeconds']:.1f} s"],
        [f"pod created -> container running, median of {len(pods)} (max)",
         f"{statistics.median(pods):.2f} s ({max(pods):.2f} s)"],
        ["NodePort Service created -> first answer from the host", f"{figures['serviceAnswerSeconds']:.2f} s"],
        [f"cold builds of the cluster's binaries, recorded when they ran ({len(builds)} builds, sum)",
         f"{sum(builds.values()) / 60:.1f} min"],
    ]
    rows += [[f"{IMAGE_NAMES.get(role, role)} image (uncompressed archive)", f"{size / 1e6:,.0f} MB"]
             for role, size in figures["imageBytes"].items()]
    return "\n".join([
        "## The local cluster (`bench/devcluster_bench.py`)",
        "",
        "![cluster start, pod start and Service answer](charts/cluster.png)",
        "",
        table(["figure", "measured"], rows),
    ])


def targets(results: Results) -> list[list[str]]:
    """The targets the issues set, each with its figure and whether this run met it."""
    rows: list[list[str]] = []

    def add(what: str, value: float, shown: str, limit: float, at_most: bool = True) -> None:
        met = value <= limit if at_most else value >= limit
        rows.append([what, shown, "met" if met else "**not met**"])

    engine = results.get("engine")
    wide = next((m for m in engine["figures"]["models"] if m["model"] == "digits-wide"), None) if engine else None
    if wide is not None:
        by = {row["method"]: row for row in wide["methods"]}
        int8, float32 = by["int8"], by[FLOAT32]
        add("digits-wide int8: bytes at most 26 % of the source", int8["bytes"] / wide["sourceBytes"],
            f"{int8['bytes'] / wide['sourceBytes']:.1%}", 0.26)
        add("digits-wide int8: metric drop at most 0.5 points", int8["drop"] * 100, f"{int8['drop'] * 100:.2f}", 0.5)
        ratio = int8["latencyMs"]["1"]["p50"] / float32["latencyMs"]["1"]["p50"]
        add("digits-wide int8: p50 at most 1/8 of float32's", ratio, f"{ratio:.3f}", 0.125)
        if "prune 80% + int8" in by:
            pruned = by["prune 80% + int8"]
            zipped = pruned["gzipBytes"] / float32["gzipBytes"]
            add("digits-wide prune 80% + int8: gzip bytes at most 10 % of float32's", zipped, f"{zipped:.1%}", 0.10)
            add("digits-wide prune 80% + int8: drop at most 1 point", pruned["drop"] * 100,
                f"{pruned['drop'] * 100:.2f}", 1.0)
    serve = results.get("serve")
    for model in serve["figures"]["models"] if serve else []:
        peer = model["servers"].get("kserve")
        if peer is None:
            continue
        ours = model["servers"]["optimodel"]
        worst = min(a["rps"] / b["rps"] for level in ours for a, b in zip(ours[level], peer[level], strict=True))
        add(f"{model['model']} serving: throughput at least 1.5x KServe's in every round", worst,
            f"{worst:.2f}x (lowest)", 1.5, at_most=False)
    operator = results.get("operator")
    if operator is not None:
        figures = operator["figures"]
        for key, what in (("jobToDeploymentSeconds", "Job complete -> Deployment"),
                          ("availableToReadySeconds", "Deployment available -> Ready")):
            p95 = percentile(figures[key], 0.95)
            add(f"operator: {what}, p95 at most 1 s", p95, f"{p95:.3f} s", 1.0)
        largest, rss = figures["fleet"][-1]["resources"], operator_peak_rss(figures)
        add(f"operator: peak RSS with {largest} resources at most 200 MB", rss / 1e6, f"{rss / 1e6:.0f} MB", 200)
        add("operator: no Job for a stored result", max(s["jobs"] for s in figures["fleet"]),
            str(max(s["jobs"] for s in figures["fleet"])), 0)
    cluster = results.get("devcluster")
    if cluster is not None:
        figures = cluster["figures"]
        add("cluster: warm start at most 30 s", figures["warmStartSeconds"], f"{figures['warmStartSeconds']:.1f} s", 30)
        median = statistics.median(figures["podStartSeconds"])
        add("cluster: pod start at most 1 s (median)", median, f"{median:.2f} s", 1.0)
    return rows


SECTIONS = {"engine": engine_section, "serve": serve_section, "mirror": mirror_section,
            "operator": operator_section, "devcluster": devcluster_section}


def page(results: Results, docs_link: str) -> str:
    parts = [
        "# Benchmark results",
        "",
        "Written by `bench/results.py` from the JSON the benchmarks wrote (`make bench`); do not edit by hand. "
        f"How each benchmark measures, and what the figures mean: [docs/benchmarks.md]({docs_link}).",
        "",
        provenance(results),
        "",
        "## Targets",
        "",
        table(["target", "this run", ""], targets(results)),
    ]
    for name, render in SECTIONS.items():
        parts += ["", render(results[name]) if name in results else f"## `bench/{name}_bench.py`\n\nNot run."]
    return "\n".join(parts) + "\n"


def operator_peak_rss(figures: dict[str, Any]) -> int:
    """The operator's VmHWM at the end of the run: after the last fleet step, or after the cycle at rest."""
    cycle = figures.get("cycle")
    return int(cycle["operatorPeakRssBytes"] if cycle else figures["fleet"][-1]["operatorPeakRssBytes"])


def operator_line(figures: dict[str, Any]) -> str:
    """The operator at the largest fleet, for the README: time to Ready, memory, API load at rest
    (over a whole full-resync cycle when the run measured one)."""
    fleet, cycle, rss = figures["fleet"][-1], figures.get("cycle"), operator_peak_rss(figures)
    load = (f"{cycle['requestsPerSecond']:.1f} API requests/s at rest, full resyncs included" if cycle else
            f"{fleet['steadyRequestsPerSecond']:.1f} API requests/s between full resyncs")
    return (f"The operator with {fleet['resources']:,} resources on the local cluster: all Ready "
            f"{fleet['secondsToReady']:.0f} s after they were created, peak RSS {rss / 2**20:.0f} MiB, {load}.")


def readme_block(results: Results, page_link: str) -> str:
    """The key table and charts the README shows: for each reference model, what int8 buys and what
    serving it costs against KServe."""
    engine, serve = results["engine"], results["serve"]
    serving = {m["model"]: m for m in serve["figures"]["models"]}
    rows = []
    for model in engine["figures"]["models"]:
        by = {row["method"]: row for row in model["methods"]}
        int8, float32 = by["int8"], by[FLOAT32]
        served = serving.get(model["model"])
        level = "8"
        if served is not None and "kserve" in served["servers"]:
            ours, peer = served["servers"]["optimodel"][level], served["servers"]["kserve"][level]
            vs_peer = f"{_median(ours, 'rps') / _median(peer, 'rps'):.2f}x"
        else:
            vs_peer = "-"
        rows.append([model["model"], f"{int8['bytes'] / float32['bytes']:.3f}", f"{int8['drop'] * 100:+.2f}",
                     times(int8["latencyMs"]["1"]["p50"] / float32["latencyMs"]["1"]["p50"]), vs_peer])
    when = engine["finished"][:10]
    machine = engine["machine"]
    images = results["devcluster"]["figures"]["imageBytes"] if "devcluster" in results else {}
    sizes = ", ".join(f"{IMAGE_NAMES.get(role, role)} {size / 1e6:,.0f} MB" for role, size in images.items())
    operator = [] if "operator" not in results else [operator_line(results["operator"]["figures"])]
    return "\n".join([
        README_BEGIN,
        table(["model", "int8 bytes vs float32", "accuracy drop (points)", "int8 p50 latency vs float32",
               "serving throughput vs KServe (8 clients)"], rows),
        "",
        f"Measured {when} on {machine['cores']} {machine['cpu']} cores, no GPU, by `make bench`; every ratio is "
        f"taken within one run. All figures, spreads and charts: [bench/RESULTS.md]({page_link}).",
        *operator,
        *([f"Images built by `make images` (uncompressed): {sizes}.", ""] if sizes else [""]),
        f"![bytes against accuracy per method]({page_link.rsplit('/', 1)[0]}/charts/size-vs-metric.png)",
        f"![throughput and p99 against concurrency]({page_link.rsplit('/', 1)[0]}/charts/serving.png)",
        README_END,
    ])


def with_block(readme: str, block: str) -> str:
    begin, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    return readme[:begin] + block + readme[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--page", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--readme", type=Path, help="rewrite this README's bench block (make bench: README.md)")
    parser.add_argument("--check", action="store_true", help="fail if the page or README block are stale")
    args = parser.parse_args()
    results = load(args.results)
    if not results:
        print(f"no benchmark results in {args.results}: run `make bench`", file=sys.stderr)
        return 1
    rendered = page(results, os.path.relpath(ROOT / "docs" / "benchmarks.md", args.page.parent))
    readme = args.readme.read_text() if args.readme else None
    if readme is not None:
        link = os.path.relpath(args.page, args.readme.parent)
        readme = with_block(readme, readme_block(results, link))
    if args.check:
        stale = [str(p) for p, text in ((args.page, rendered), (args.readme, readme))
                 if p is not None and text is not None and p.read_text() != text]
        if stale:
            print(f"not what {args.results} renders to: {', '.join(stale)}; run bench/results.py", file=sys.stderr)
            return 1
        return 0
    args.page.parent.mkdir(parents=True, exist_ok=True)
    args.page.write_text(rendered)
    if args.readme is not None and readme is not None:
        args.readme.write_text(readme)
    draw_all(results, args.page.parent / "charts")
    print(f"wrote {args.page} and its charts" + (f", and {args.readme}'s figures" if args.readme else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
