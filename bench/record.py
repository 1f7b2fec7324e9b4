"""What every benchmark writes with `--json`: its figures, the settings that produced them, the
machine and the time, so that bench/results.py can say on what machine and when, and whether the
machine was busy (load average before and after), beside every figure it draws.

Used by every bench/*.py script; imports nothing of the product.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and kernel of this machine (what a reader needs to compare figures)."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGiB": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@contextmanager
def recording(path: Path | None, benchmark: str, settings: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the dict the benchmark fills with its figures; on a normal exit write it to `path` (when
    given) with the settings, the machine, start and end times and load averages. A benchmark that
    fails writes nothing: a half-filled file would be drawn as if complete."""
    figures: dict[str, Any] = {}
    started, load_before = _now(), os.getloadavg()[0]
    yield figures
    if path is None:
        return
    document = {
        "benchmark": benchmark,
        "started": started,
        "finished": _now(),
        "loadAverage": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "machine": machine(),
        "settings": settings,
        "figures": figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
