"""The filter on file descriptor 2 around TensorFlow and LiteRT calls, and the library loggers made
quiet: noise dropped, the rest (real warnings and errors) kept."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from optimodel.optimize.native_logs import CHATTY_LOGGERS, filtered_stderr, quiet_python_loggers

CUDA_ERROR = b"E0000 00:00:1795966808.400418   25165 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
REAL_ERROR = b"F0000 tflite/kernels/conv.cc:12] something a user must see\n"
# As TensorFlow 2.21 prints it on x86, once per library that loads oneDNN.
ONEDNN = (b"I0000 00:00:1796000000.123456   4242 port.cc:153] oneDNN custom operations are on. You may see "
          b"slightly different numerical results due to floating-point round-off errors from different "
          b"computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n")
REAL_WARNING = b"W0000 00:00:1796000000.223456   4242 cpu_feature_guard.cc:210] a warning a user must see\n"


def test_known_noise_is_dropped_and_other_lines_are_written_back_in_order(capfd: pytest.CaptureFixture[str]) -> None:
    with filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, CUDA_ERROR)
        os.write(2, b"first\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, ONEDNN)
        os.write(2, REAL_WARNING)
        os.write(2, ONEDNN)
        os.write(2, REAL_ERROR)
        assert capfd.readouterr().err == ""  # held back while the block runs

    assert capfd.readouterr().err.encode() == b"first\n" + REAL_WARNING + REAL_ERROR


def test_lines_are_written_back_when_the_block_raises(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), filtered_stderr():
        os.write(2, REAL_ERROR)
        raise RuntimeError("converter crashed")

    assert capfd.readouterr().err.encode() == REAL_ERROR
    os.write(2, b"after\n")  # descriptor 2 is the real one again
    assert capfd.readouterr().err == "after\n"


@pytest.fixture
def restored_levels() -> Iterator[None]:
    """The chatty loggers' levels put back: other tests see logging as they found it."""
    saved = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_matplotlib_info_is_dropped_and_its_warnings_kept(
        restored_levels: None, caplog: pytest.LogCaptureFixture) -> None:
    """The command line logs at INFO; matplotlib's font cache line is chatter, its warnings are not."""
    caplog.set_level(logging.INFO)
    quiet_python_loggers()
    font_manager = logging.getLogger("matplotlib.font_manager")  # the logger that says it, a child
    font_manager.info("generated new fontManager")
    font_manager.warning("Matplotlib created a temporary cache directory: a warning a user must see")
    logging.getLogger("optimodel.progress").info("our own progress line")

    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("matplotlib.font_manager", "WARNING",
         "Matplotlib created a temporary cache directory: a warning a user must see"),
        ("optimodel.progress", "INFO", "our own progress line"),
    ]
