"""bench/results.py: the results page, its charts and the README's figures come from the benchmarks'
JSON and from nowhere else.

The committed page and README block must be what the committed JSON renders to; the rendering is
checked on a small hand-made result set whose every figure is known (a targets row flips when its
figure crosses the limit, a slower method is marked, the README block is replaced and nothing else).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402

MACHINE = {"cpu": "Test CPU", "cores": 2, "memoryGiB": 24.0, "kernel": "6.1", "python": "3.11.2"}


def document(name: str, settings: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": name, "started": "2026-12-05T05:00:00Z", "finished": "2026-12-05T05:10:00Z",
            "loadAverage": {"before": 0.1, "after": 1.9}, "machine": MACHINE, "settings": settings,
            "figures": figures}


def method(name: str, size: int, metric: float, drop: float | None, p50: float) -> dict[str, Any]:
    latency = {"p50": p50, "p95": p50 * 2, "p50Rounds": [p50 * 0.9, p50, p50 * 1.1]}
    return {"method": name, "bytes": size, "gzipBytes": size // 2, "metric": metric, "drop": drop, "sparsity": None,
            "latencyMs": {"1": latency, "2": latency}, "conversionSeconds": 3.0, "wallSeconds": None}


def run(rps: float, p99: float) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p99 / 3, "p99_ms": p99, "errors": 0}


def scenario(name: str, levels: dict[str, list[dict[str, float]]], answered: int, mirrored: int = 0,
             errors: int = 0, dropped: int = 0) -> dict[str, Any]:
    """A scenario whose serving server spent 0.5 ms of CPU per answer, 1 ms with a healthy mirror."""
    return {"scenario": name, "levels": levels, "cpuSeconds": answered * (0.001 if name == "healthy" else 0.0005),
            "mirror": {"answered": answered, "mirrored": mirrored, "errors": errors, "dropped": dropped}}


def mirror_run(rps: float, p50: float, p99: float) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": 0}


@pytest.fixture
def sample() -> results.Results:
    """digits-wide: int8 at 25 % of the source's bytes and 0.1 of float32's latency, dynamic slower;
    optimodel at 2x KServe's throughput; a fleet of 100 with no Job."""
    wide = {"model": "digits-wide", "sourceBytes": 4000, "metric": "accuracy", "samples": 450, "rounds": 3,
            "methods": [method("float32", 4000, 0.98, None, 2.0), method("int8", 1000, 0.978, 0.002, 0.2),
                        method("dynamic", 1000, 0.98, 0.0, 3.0)]}
    serve = {"model": "digits-wide", "bytes": 1000, "servers": {
        "optimodel": {"8": [run(1800, 9.0), run(1700, 9.5)], "1": [run(800, 3.0), run(820, 3.1)]},  # as JSON sorts
        "kserve": {"1": [run(400, 4.0), run(410, 4.2)], "8": [run(850, 20.0), run(900, 21.0)]}}}
    fleet = [{"resources": 100, "created": 100, "secondsToOptimized": 30.0, "secondsToReady": 40.0, "jobs": 0,
              "steadyRequestsPerSecond": 1.5, "steadyWrites": 0, "windowSeconds": 120,
              "operatorPeakRssBytes": 150_000_000}]
    mirror = {"model": "digits-wide", "bytes": 1000, "candidateAnswered": 1500, "candidateCpuSeconds": 0.6,
              "hungConnectionsAccepted": 8,
              "scenarios": [  # levels as JSON sorts them
                  scenario("baseline", {"1": [mirror_run(1000, 1.0, 3.0), mirror_run(800, 1.0, 3.0)],
                                        "8": [mirror_run(1800, 4.0, 9.0), mirror_run(1800, 4.0, 9.0)]}, 2000),
                  scenario("healthy", {"1": [mirror_run(500, 2.0, 6.0), mirror_run(400, 2.0, 6.0)],
                                       "8": [mirror_run(900, 8.0, 27.0), mirror_run(900, 8.0, 27.0)]},
                           2000, mirrored=1500, dropped=500),
                  scenario("hung", {"1": [mirror_run(950, 1.1, 3.3), mirror_run(840, 1.1, 3.3)],
                                    "8": [mirror_run(1800, 4.0, 9.0), mirror_run(1800, 4.0, 9.0)]},
                           2000, errors=8, dropped=1992),
                  scenario("refused", {"1": [mirror_run(1000, 1.0, 3.0), mirror_run(800, 1.0, 3.0)],
                                       "8": [mirror_run(1800, 4.0, 9.0), mirror_run(1800, 4.0, 9.0)]},
                           1000, errors=3, dropped=2)]}
    mirror_settings = {"seconds": 6, "rounds": 2, "optimodel": ["--workers", "2"],
                       "mirror": ["--mirror-percent", "100"], "candidate": "the same file", "queueSize": 64,
                       "senders": 2, "timeoutSeconds": 5.0}
    return {
        "engine": document("engine", {"rounds": 3, "searchGates": None}, {"models": [wide]}),
        "mirror": document("mirror", mirror_settings, mirror),
        "serve": document("serve", {"rounds": 2, "seconds": 6, "optimodel": ["--workers", "2"],
                                    "kserve": ["--workers", "2"], "peer": ["kserve==0.21.0"]}, {"models": [serve]}),
        "operator": document("operator", {"serving": 20, "windowSeconds": 120}, {
            "jobToDeploymentSeconds": [0.05, 0.06, 0.2], "availableToReadySeconds": [0.1, 0.1, 0.3],
            "serveProcessRssBytes": [99 * 1024 * 1024], "fleet": fleet}),
        "devcluster": document("devcluster", {"pods": 3}, {
            "coldBuildSeconds": {"etcd": 60.0}, "warmStartSeconds": 7.5, "podStartSeconds": [0.6, 0.5, 0.7],
            "serviceAnswerSeconds": 1.2, "imageBytes": {"serve": 457_000_000}}),
    }


def target(rows: list[list[str]], start: str) -> list[str]:
    return next(row for row in rows if row[0].startswith(start))


def test_targets_say_met_until_the_figure_crosses_the_limit(sample: results.Results) -> None:
    rows = results.targets(sample)
    assert target(rows, "digits-wide int8: bytes")[1:] == ["25.0%", "met"]
    assert target(rows, "digits-wide int8: p50")[1:] == ["0.100", "met"]
    assert target(rows, "digits-wide serving")[1:] == ["1.89x (lowest)", "met"]
    assert target(rows, "operator: peak RSS with 100")[2] == "met"

    slower = copy.deepcopy(sample)
    int8 = slower["engine"]["figures"]["models"][0]["methods"][1]
    int8["latencyMs"]["1"]["p50"] = 0.3  # 0.15 of float32's: above 1/8
    slower["serve"]["figures"]["models"][0]["servers"]["kserve"]["8"][1]["rps"] = 1200  # one round at 1.42x
    rows = results.targets(slower)
    assert target(rows, "digits-wide int8: p50")[1:] == ["0.150", "**not met**"]
    assert target(rows, "digits-wide serving")[1:] == ["1.42x (lowest)", "**not met**"]


def test_the_page_gives_same_run_ratios_and_marks_a_slower_method(sample: results.Results) -> None:
    text = results.page(sample, "../docs/benchmarks.md")
    assert "Machine: Test CPU, 2 cores, 24.0 GiB" in text
    assert "| dynamic | 1,000 | 0.250 |" in text and "1.50x **slower**" in text
    assert "| int8 | 1,000 | 0.250 |" in text and "| 0.10x |" in text
    assert "| 8 | 1750 req/s, 3.08 / 9.25 ms | 875 req/s, 6.83 / 20.50 ms | 2.00x | 1.89x-2.12x | 0.45 |" in text
    assert text.index("| 1 | 810 req/s") < text.index("| 8 | 1750 req/s")  # concurrency in numeric order
    assert "| 100 | 100 | 30.0 s | 40.0 s | 0 | 1.50 | 0 | 143 MiB |" in text
    assert "Over 600 s" not in text and "between full resyncs" in results.operator_line(sample["operator"]["figures"])

    cycled = copy.deepcopy(sample)
    figures = cycled["operator"]["figures"]
    figures["cycle"] = {"resources": 100, "seconds": 600.0, "requestsPerSecond": 2.5, "writes": 300,
                        "operatorPeakRssBytes": 210_000_000}
    text = results.page(cycled, "../docs/benchmarks.md")
    assert "Over 600 s with all 100 resources settled" in text and "2.50 API requests/s, 300 writes" in text
    assert target(results.targets(cycled), "operator: peak RSS with 100")[1:] == ["210 MB", "**not met**"]
    assert "2.5 API requests/s at rest, full resyncs included" in results.operator_line(figures)


def test_the_mirror_section_gives_same_run_ratios_to_the_baseline_and_what_each_mirror_did(
    sample: results.Results,
) -> None:
    text = results.page(sample, "../docs/benchmarks.md")
    section = text[text.index("## Shadow mirroring"):text.index("## The operator")]
    assert "| no mirror | 1 | 900 req/s, 1.00 / 3.00 ms | - | - | - | - |" in section
    assert ("| hung candidate | 1 | 895 req/s, 1.10 / 3.30 ms | 0.99x | 0.95x-1.05x | 1.10x | 1.10x (1.10x-1.10x) |"
            in section)
    assert ("| healthy candidate | 8 | 900 req/s, 8.00 / 27.00 ms | 0.50x | 0.50x-0.50x | 2.00x | 3.00x (3.00x-3.00x) |"
            in section)
    assert section.index("| hung candidate | 1 |") < section.index("| hung candidate | 8 |")
    # The mirror's own counts; what they leave out was not copied (paused) or still queued.
    assert "| no mirror | 2,000 | - | - | - | - | 0.500 ms |" in section
    assert "| healthy candidate | 2,000 | 1,500 | 0 | 500 | 0 | 1.000 ms |" in section
    assert "| nothing listening | 1,000 | 0 | 3 | 2 | 995 | 0.500 ms |" in section
    assert "at 0.400 ms of CPU each; the hung candidate accepted 8 connections" in section
    assert ("against the baseline's: healthy candidate +0.500 ms (+100%), hung candidate +0.000 ms (+0%), "
            "nothing listening +0.000 ms (+0%)." in section)
    assert "CPU contention" in section


def test_a_benchmark_not_run_is_said_so(sample: results.Results) -> None:
    del sample["operator"]
    text = results.page(sample, "docs.md")
    assert "## `bench/operator_bench.py`\n\nNot run." in text
    assert not any(row[0].startswith("operator") for row in results.targets(sample))


def test_the_readme_block_is_replaced_and_nothing_else(sample: results.Results) -> None:
    readme = f"intro\n{results.README_BEGIN}\nold figures\n{results.README_END}\noutro\n"
    updated = results.with_block(readme, results.readme_block(sample, "bench/RESULTS.md"))
    assert updated.startswith("intro\n<!-- bench:begin -->\n") and updated.endswith("<!-- bench:end -->\noutro\n")
    assert "old figures" not in updated
    assert "| digits-wide | 0.250 | +0.20 | 0.10x | 2.00x |" in updated
    assert "](bench/charts/serving.png)" in updated


def test_check_fails_on_a_stale_page_and_writing_draws_the_charts(sample: results.Results, tmp_path: Path) -> None:
    data = tmp_path / "results"
    data.mkdir()
    for name, doc in sample.items():
        (data / f"{name}.json").write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{results.README_BEGIN}\n{results.README_END}\n")
    page = tmp_path / "bench" / "RESULTS.md"
    page.parent.mkdir()
    argv = [sys.executable, str(ROOT / "bench" / "results.py"), "--results", str(data), "--page", str(page),
            "--readme", str(readme)]
    subprocess.run(argv, check=True, capture_output=True)
    assert subprocess.run([*argv, "--check"], capture_output=True).returncode == 0
    for chart in ("size-vs-metric", "latency", "serving", "operator", "cluster"):
        png = (page.parent / "charts" / f"{chart}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, chart

    sample["devcluster"]["figures"]["warmStartSeconds"] = 9.0
    (data / "devcluster.json").write_text(json.dumps(sample["devcluster"]))
    stale = subprocess.run([*argv, "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "RESULTS.md" in stale.stderr


def test_the_committed_page_and_readme_are_what_the_committed_results_render_to() -> None:
    checked = subprocess.run([sys.executable, str(ROOT / "bench" / "results.py"), "--readme", str(ROOT / "README.md"),
                              "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
