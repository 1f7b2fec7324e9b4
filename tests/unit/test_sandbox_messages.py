"""The node agent's sandbox never writes a container's termination message onto the host's own path."""

from __future__ import annotations

import os

from optimodel.devcluster.nodeagent.sandbox import _message_path

SPEC = {"terminationMessagePath": None,
        "mounts": [{"source": "/state/pods/p/c/termination-log", "target": "/dev/termination-log"}]}


def test_a_failure_before_entering_writes_to_the_containers_host_side_file() -> None:
    assert _message_path(SPEC, entered=False) == "/state/pods/p/c/termination-log"


def test_a_failure_after_entering_writes_to_the_path_the_container_sees() -> None:
    assert _message_path(SPEC, entered=True) == "/dev/termination-log"


def test_without_a_matching_mount_the_message_is_dropped_rather_than_written_to_the_host() -> None:
    spec = {"terminationMessagePath": "/tmp/message", "mounts": []}
    assert _message_path(spec, entered=False) == os.devnull
