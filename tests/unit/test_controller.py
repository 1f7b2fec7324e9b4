"""Controller edges that need no cluster: settings from the environment, termination messages."""

from __future__ import annotations

import pytest

from optimodel.controller.kube import _termination
from optimodel.controller.settings import Settings


def test_settings_from_env() -> None:
    settings = Settings.from_env({
        "OPTIMODEL_IMAGE": "reg/optimodel:1", "OPTIMODEL_SERVE_IMAGE": "reg/serve:1",
        "OPTIMODEL_NAMESPACES": "ml, staging", "OPTIMODEL_RUN_AS_USER": "none", "OPTIMODEL_METRICS_PORT": "0",
    })
    assert settings.pods.job_image == "reg/optimodel:1" and settings.pods.serve_image == "reg/serve:1"
    assert settings.namespaces == ("ml", "staging")
    assert settings.pods.run_as_user is None and settings.metrics_port == 0


def test_bad_setting_names_the_variable() -> None:
    with pytest.raises(SystemExit, match="OPTIMODEL_RESYNC_SECONDS"):
        Settings.from_env({"OPTIMODEL_RESYNC_SECONDS": "soon"})


def test_termination_message_json_or_log_tail() -> None:
    assert _termination('{"error": "x", "reason": "InvalidInput"}') == {"error": "x", "reason": "InvalidInput"}
    assert _termination("loading\nTraceback...\nValueError: bad h5 file\n") == {"error": "ValueError: bad h5 file"}
    assert _termination("") is None
