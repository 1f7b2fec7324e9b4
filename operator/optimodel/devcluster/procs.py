"""Start and stop the cluster's long-running processes by recorded id.

A process is recorded as (pid, start time from /proc): `down` then stops exactly the processes
`up` started, and never a stranger that happens to reuse a pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    """A started process: its pid and its kernel start time (clock ticks since boot)."""

    name: str
    pid: int
    start_time: int

    def to_json(self) -> dict[str, object]:
        """The record as stored in the state file."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ProcessRecord:
        """Read a record written by `to_json`."""
        return cls(name=str(data["name"]), pid=int(str(data["pid"])), start_time=int(str(data["start_time"])))


def start_time_of(pid: int) -> int | None:
    """The kernel start time of `pid`, or None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are space separated.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    """True when the recorded process still runs (same pid and same start time)."""
    return start_time_of(record.pid) == record.start_time


def spawn(name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> ProcessRecord:
    """Start `argv` in its own session, detached from the caller, output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    started = start_time_of(proc.pid)
    if started is None:
        raise RuntimeError(f"{name} exited at once; see {log_path}")
    return ProcessRecord(name=name, pid=proc.pid, start_time=started)


def stop(record: ProcessRecord, grace: float = 10.0) -> None:
    """SIGTERM the recorded process, SIGKILL it after `grace` seconds; no-op when it is gone."""
    if not is_alive(record):
        return
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_alive(record):
            return
        time.sleep(0.05)
    if is_alive(record):
        os.kill(record.pid, signal.SIGKILL)
        for _ in range(100):
            _reap(record.pid)
            if not is_alive(record):
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect the exit status when `pid` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
