"""Benchmark of shadow mirroring (`optimodel serve --mirror-url`): does a client wait for the candidate?

The claim (operator/optimodel/serve/mirror.py): a serving server copies each request to the
candidate after answering it, through a bounded queue and two sender tasks, so a client's latency
and throughput never depend on the candidate. Four serving servers of the same digits-wide int8
model, each with serve_bench's flags, differ only in where they mirror to:

1. `baseline`: no `--mirror-url`;
2. `healthy`: 100 % to a candidate `optimodel serve` of the same file, with the same flags;
3. `hung`: 100 % to a TCP listener of this script that accepts connections and never answers;
4. `refused`: 100 % to a loopback port nothing listens on.

All of them and the candidate stay up for the whole run; vegeta's closed loop (serve_bench's
`attack`) drives them in turns, level by level (concurrency 1 and 8), for `--rounds` rounds, the
order flipped every round, so each scenario's ratio to the baseline is a same-run figure. At the end
every serving server's /metrics (each worker's, read as the operator reads them) says what its
mirror did: copies the candidate answered, its errors, copies dropped; and /proc says how much CPU
its processes spent per request answered.

The candidate shares this machine's two cores with the serving server: in `healthy` the candidate's
work competes with the client's for the CPU, which no design of the mirror avoids; the serving
server's CPU per request beyond the baseline's is the mirror's own cost, wherever the candidate
runs. `hung` and `refused` cost the machine next to nothing: they are the clean check.

Run: `python bench/mirror_bench.py [--seconds 6] [--rounds 4] [--json bench/results/mirror.json]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.record, bench.serve_bench

from bench.record import recording  # noqa: E402
from bench.serve_bench import (  # noqa: E402
    INPUT_SHAPES,
    OPTIMODEL_FLAGS,
    WORKERS,
    free_port,
    measure,
    model_path,
    request_body,
    start_optimodel,
    stop,
    table,
    wait_ready,
)
from optimodel.controller.scrape import pod_texts  # noqa: E402
from optimodel.serve.mirror import MirrorSettings  # noqa: E402

MODEL = "digits-wide"
CONCURRENCIES = (1, 8)
MIRROR_FLAGS = ["--mirror-percent", "100", "--mirror-compare", "classes"]
INFER_ROUTE = "/v2/models/{name}/infer"
SCRAPES = 5  # pod_texts calls before giving up on hearing from every worker


class HungCandidate:
    """A candidate that accepts connections and never answers: the sockets are held open, unread."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def accepted(self) -> int:
        return len(self._held)

    def _accept_forever(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # shut down by close()
                return
            self._held.append(connection)

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join()
        for connection in self._held:
            connection.close()


@contextmanager
def hung_candidate() -> Iterator[HungCandidate]:
    candidate = HungCandidate()
    try:
        yield candidate
    finally:
        candidate.close()


@dataclass
class MirrorCounts:
    """What a serving server's /metrics say, added up over its workers, at the end of the run. The
    answered requests the other three do not account for were not copied (the mirror pauses for
    `pause_seconds` after the candidate could not be reached) or were still queued."""

    answered: int  # inference requests it answered with 200 (the measured windows and their warm-ups)
    mirrored: int  # copies the candidate answered usably (optimodel_shadow_requests_total)
    errors: int  # copies the candidate failed: timeout, refused, error status
    dropped: int  # copies thrown away: the queue was full, or they were queued before a pause began


def counter(texts: list[str], sample: str, **labels: str) -> int:
    """A counter added up over the workers' texts and over every label value not given in `labels`."""
    total = 0.0
    for text in texts:
        for family in text_string_to_metric_families(text):
            total += sum(s.value for s in family.samples
                         if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))
    return int(total)


def worker_texts(port: int) -> list[str]:
    """Every worker's /metrics text: a connection reaches one worker chosen by the kernel, so ask on
    new connections (as the operator does) until each one answered."""
    for _ in range(SCRAPES):
        texts = pod_texts("127.0.0.1", port, WORKERS)
        if len(texts) == WORKERS:
            return texts
    raise RuntimeError(f"not every worker of 127.0.0.1:{port} answered /metrics")


def mirror_counts(port: int) -> MirrorCounts:
    texts = worker_texts(port)
    return MirrorCounts(
        answered=counter(texts, "optimodel_requests_total", route=INFER_ROUTE, code="200"),
        mirrored=counter(texts, "optimodel_shadow_requests_total"),
        errors=counter(texts, "optimodel_shadow_errors_total"),
        dropped=counter(texts, "optimodel_shadow_dropped_total"),
    )


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and of its descendants alive now: a server and its workers."""
    task = Path(f"/proc/{pid}/task/{pid}")
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return own + sum(cpu_seconds(int(child)) for child in (task / "children").read_text().split())


@dataclass
class Servers:
    """The serving servers' ports and pids by scenario, in the order the page shows them, and the
    candidate's."""

    ports: dict[str, int]
    pids: dict[str, int]
    candidate_port: int
    candidate_pid: int


@contextmanager
def servers_up(model: Path, hung_url: str) -> Iterator[Servers]:
    """The candidate and one serving server per scenario, all ready; stopped on the way out."""
    candidate_port = free_port()
    sha256 = hashlib.sha256(model.read_bytes()).hexdigest()  # the candidate names it, as the operator's does
    mirror_urls = {"baseline": None, "healthy": f"http://127.0.0.1:{candidate_port}", "hung": hung_url,
                   "refused": f"http://127.0.0.1:{free_port()}"}
    ports = {scenario: free_port() for scenario in mirror_urls}
    processes = {candidate_port: start_optimodel(model, MODEL, candidate_port, "--sha256", sha256)}
    try:
        for scenario, url in mirror_urls.items():
            flags = [] if url is None else ["--mirror-url", url, *MIRROR_FLAGS]
            processes[ports[scenario]] = start_optimodel(model, MODEL, ports[scenario], *flags)
        for port, process in processes.items():
            wait_ready(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready", process)
        yield Servers(ports=ports, pids={scenario: processes[port].pid for scenario, port in ports.items()},
                      candidate_port=candidate_port, candidate_pid=processes[candidate_port].pid)
    finally:
        for process in processes.values():
            stop(process)


def run(model: Path, rounds: int, seconds: float) -> dict[str, Any]:
    """Every scenario measured in turns; then each serving server's mirror counts."""
    with (hung_candidate() as hung, servers_up(model, hung.url) as servers,
          tempfile.TemporaryDirectory() as directory):
        body = request_body(Path(directory), INPUT_SHAPES[MODEL])
        pids = {**servers.pids, "candidate": servers.candidate_pid}
        cpu_before = {label: cpu_seconds(pid) for label, pid in pids.items()}
        results = measure(servers.ports, MODEL, body, rounds, seconds, CONCURRENCIES)
        cpu = {label: cpu_seconds(pid) - cpu_before[label] for label, pid in pids.items()}
        counts = {scenario: mirror_counts(port) for scenario, port in servers.ports.items()}
        candidate_answered = counter(worker_texts(servers.candidate_port), "optimodel_requests_total",
                                     route=INFER_ROUTE, code="200")
        accepted = hung.accepted
    print(f"\n{MODEL}\n\n{table(results)}\n")
    for scenario, count in counts.items():
        print(f"  {scenario:<9} {count}, {cpu[scenario] / count.answered * 1e3:.3f} CPU ms per request")
    print(f"  the candidate answered {candidate_answered} with {cpu['candidate']:.1f} CPU s; "
          f"the hung candidate accepted {accepted} connections")
    return {
        "model": MODEL,
        "bytes": model.stat().st_size,
        "scenarios": [{"scenario": scenario, "levels": {str(c): runs for c, runs in levels.items()},
                       "mirror": asdict(counts[scenario]), "cpuSeconds": round(cpu[scenario], 2)}
                      for scenario, levels in results.items()],
        "candidateAnswered": candidate_answered,
        "candidateCpuSeconds": round(cpu["candidate"], 2),
        "hungConnectionsAccepted": accepted,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per level, scenario and round")
    parser.add_argument("--rounds", type=int, default=4, help="times each level is measured per scenario")
    parser.add_argument("--json", type=Path, help="write the figures here for bench/results.py")
    args = parser.parse_args()
    defaults = MirrorSettings(url="")
    settings = {"seconds": args.seconds, "rounds": args.rounds, "concurrencies": list(CONCURRENCIES),
                "optimodel": OPTIMODEL_FLAGS, "mirror": MIRROR_FLAGS, "candidate": "the same file, the same flags",
                "queueSize": defaults.queue_size, "senders": defaults.senders,
                "timeoutSeconds": defaults.timeout_seconds, "pauseSeconds": defaults.pause_seconds}
    with recording(args.json, "mirror", settings) as figures:
        figures.update(run(model_path(MODEL), args.rounds, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
