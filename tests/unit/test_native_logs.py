"""The filter on file descriptor 2 around TensorFlow and LiteRT calls: noise dropped, the rest kept."""

from __future__ import annotations

import os

import pytest

from optimodel.optimize.native_logs import filtered_stderr

CUDA_ERROR = b"E0000 00:00:1795966808.400418   25165 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
REAL_ERROR = b"F0000 tflite/kernels/conv.cc:12] something a user must see\n"


def test_known_noise_is_dropped_and_other_lines_are_written_back_in_order(capfd: pytest.CaptureFixture[str]) -> None:
    with filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, CUDA_ERROR)
        os.write(2, b"first\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, REAL_ERROR)
        assert capfd.readouterr().err == ""  # held back while the block runs

    assert capfd.readouterr().err.encode() == b"first\n" + REAL_ERROR


def test_lines_are_written_back_when_the_block_raises(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), filtered_stderr():
        os.write(2, REAL_ERROR)
        raise RuntimeError("converter crashed")

    assert capfd.readouterr().err.encode() == REAL_ERROR
    os.write(2, b"after\n")  # descriptor 2 is the real one again
    assert capfd.readouterr().err == "after\n"
