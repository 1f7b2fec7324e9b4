"""Content keys, Kubernetes quantities and the before/after table."""

from __future__ import annotations

from typing import Any

import pytest

from optimodel.contentkey import content_key, recipe_key
from optimodel.quantity import format_bytes, parse_bytes
from optimodel.report import ArtifactInfo, GateResult, Metrics, Report, SourceInfo
from optimodel.spec import parse_spec
from optimodel.table import render

TOOLS = {"tensorflow": "2.21.0"}
DATA = {"evaluation": "e" * 64}


def spec(**changes: Any) -> Any:
    base: dict[str, Any] = {"source": {"uri": "s3://models/m.h5"}, "evaluation": {"data": "s3://data/test.npz"},
                            "artifacts": {"uri": "s3://artifacts/"}, **changes}
    return parse_spec(base)


def test_content_key_covers_source_data_recipe_and_tools_but_not_gates_or_serving() -> None:
    key = content_key(spec(), "a" * 64, DATA, TOOLS)
    assert key == content_key(spec(gates={"maxSizeRatio": 0.1}, serving={"replicas": 3}), "a" * 64, DATA, TOOLS)
    assert key == content_key(spec(evaluation={"data": "s3://elsewhere/test.npz"}), "a" * 64, DATA, TOOLS)
    assert key != content_key(spec(), "b" * 64, DATA, TOOLS)
    assert key != content_key(spec(), "a" * 64, {"evaluation": "f" * 64}, TOOLS)
    assert key != content_key(spec(), "a" * 64, DATA, {"tensorflow": "2.22.0"})
    assert key != content_key(spec(optimization={"quantization": {"type": "float16"}}), "a" * 64, DATA, TOOLS)


def test_auto_search_keys_include_the_gates_that_choose() -> None:
    auto = {"method": "auto"}
    assert content_key(spec(optimization=auto), "a" * 64, DATA, TOOLS) != content_key(
        spec(optimization=auto, gates={"maxSizeRatio": 0.1}), "a" * 64, DATA, TOOLS)


def test_recipe_key_changes_with_the_source_version_and_image() -> None:
    key = recipe_key(spec(), '"etag-1"', "optimodel:0.1.0")
    assert key == recipe_key(spec(serving={"replicas": 4}), '"etag-1"', "optimodel:0.1.0")
    assert key != recipe_key(spec(), '"etag-2"', "optimodel:0.1.0")
    assert key != recipe_key(spec(), '"etag-1"', "optimodel:0.2.0")


@pytest.mark.parametrize(("text", "expected"), [
    ("12Mi", 12 * 2**20), ("500k", 500_000), ("1.5G", 1_500_000_000), (1048576, 1048576), ("1e3", 1000),
    ("0.5Ki", 512), (10.2, 11)])
def test_quantities(text: str | int | float, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["12 MB", "-1", "Mi", "1.2.3"])
def test_bad_quantities_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_bytes(text)


def test_the_table_shows_before_and_after() -> None:
    report = Report(
        key="k" * 64, source=SourceInfo(uri="s3://models/m.h5", size_bytes=33_656_916, sha256="s" * 64),
        artifact=ArtifactInfo(uri="s3://a/k/model.tflite", size_bytes=8_528_488, gzip_bytes=8_159_201, sha256="a"),
        method="quantize", quantization="int8",
        metrics=Metrics(metric="accuracy", baseline=0.9899, optimized=0.9899, drop=0.0, size_ratio=0.2534,
                        latency_p50_ms=0.27, latency_p95_ms=0.41, baseline_latency_p50_ms=4.1),
        gates=[GateResult(name="maxSizeRatio", threshold=0.3, actual=0.2534, passed=True)], passed=True)
    table = render(report)
    assert "size         33.7 MB -> 8.5 MB (25%)" in table
    assert "accuracy     0.9899 -> 0.9899 (drop +0.0000)" in table
    assert "PASS  maxSizeRatio" in table and "verdict: PASSED" in table
    assert format_bytes(999) == "999 B"
