"""Keeps TensorFlow's and LiteRT's C++ chatter out of the terminal and the Job's log. Optimizer layer.

May import only the stdlib. On a machine without a GPU, TensorFlow writes from C++ to file
descriptor 2 before its logging is configured ("All log messages before absl::InitializeLog() is
called...", "Could not find cuda drivers...", and an `E` line "failed call to cuInit" that reads
like a failure), and `TF_CPP_MIN_LOG_LEVEL` cannot silence those; LiteRT and the converter add a
line for the first interpreter and for each int8 conversion. Inside `filtered_stderr()` descriptor
2 goes to a temporary file; on leaving, every line that is not one of these known messages is
written back, so a real error still reaches the user (after the block instead of during it).
"""

from __future__ import annotations

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
)


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
