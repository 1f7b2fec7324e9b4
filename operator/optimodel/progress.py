"""Progress of a long run: a bar on a terminal, plain lines in a pod log. Edge layer (writes to a stream)."""

from __future__ import annotations

import sys
from typing import TextIO


class LineProgress:
    """`progress 35% converting int8` lines: greppable in `kubectl logs`."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream

    def __call__(self, fraction: float, message: str) -> None:
        print(f"progress {fraction:4.0%} {message}", file=self._stream, flush=True)

    def close(self) -> None:
        """Nothing to release; a bar needs closing, lines do not."""


class BarProgress:
    """A tqdm bar on stderr, with the current step as its description."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=100, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}", leave=False)

    def __call__(self, fraction: float, message: str) -> None:
        self._bar.set_description_str(message[:48].ljust(48))
        self._bar.update(max(0, round(fraction * 100) - self._bar.n))

    def close(self) -> None:
        self._bar.close()


def progress_for(stream: TextIO = sys.stderr) -> LineProgress | BarProgress:
    return BarProgress() if stream.isatty() else LineProgress(stream)
