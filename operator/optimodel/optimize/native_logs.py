"""Keeps TensorFlow's, LiteRT's and matplotlib's start-up chatter out of the terminal and the Job's
log. Optimizer layer.

May import only the stdlib. On a machine without a GPU, TensorFlow writes from C++ to file
descriptor 2 before its logging is configured ("All log messages before absl::InitializeLog() is
called...", "Could not find cuda drivers...", an `E` line "failed call to cuInit" that reads like
a failure, and on x86 an `I` line "oneDNN custom operations are on" per library that loads
oneDNN), and `TF_CPP_MIN_LOG_LEVEL` cannot silence those; LiteRT and the converter add a line for
the first interpreter and for each int8 conversion. Inside `filtered_stderr()` descriptor 2 goes to
a temporary file; on leaving, every line that is not one of these known messages is written back,
so a real error still reaches the user (after the block instead of during it).

matplotlib logs through Python's logging: at INFO, "generated new fontManager" each time it builds
its font cache (every Job: the pod's home is a fresh scratch volume), shown because the command
line logs at INFO. `quiet_python_loggers()` raises such libraries to WARNING, so their warnings
still pass.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

KNOWN_NOISE = (
    b"All log messages before absl::InitializeLog() is called",
    b"cudart_stub.cc",
    b"Could not find cuda drivers",
    b"failed call to cuInit",
    b"Created TensorFlow Lite XNNPACK delegate",
    b"fully_quantize: ",
    b"oneDNN custom operations are on",
)

# Python loggers of libraries whose INFO lines are start-up chatter, not progress of the user's run.
CHATTY_LOGGERS = ("matplotlib",)


def is_noise(line: bytes) -> bool:
    return any(marker in line for marker in KNOWN_NOISE)


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Descriptor 2 (C++ and Python writes alike) into a file for the block, then replayed without noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured.read().splitlines(keepends=True) if not is_noise(line))
            if kept:
                os.write(2, kept)


def quiet_python_loggers() -> None:
    """INFO and below of `CHATTY_LOGGERS` dropped, their warnings and errors kept."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
