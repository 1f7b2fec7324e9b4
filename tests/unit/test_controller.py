"""Controller edges that need no cluster: settings from the environment, termination messages, Jobs."""

from __future__ import annotations

import pytest
from kubernetes import client

from optimodel.controller.kube import _termination, observe_job
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


def test_a_job_is_observed_with_its_recipe_attempt_and_request() -> None:
    retry = client.V1Job(
        metadata=client.V1ObjectMeta(
            name="digits-1212121212-2",
            annotations={
                "optimodel.io/recipe-key": "12" * 32,
                "optimodel.io/attempt": "2",
                "optimodel.io/retry-requested-at": "1700000000",
            },
        ),
        status=client.V1JobStatus(
            failed=1,
            conditions=[client.V1JobCondition(type="Failed", status="True", reason="DeadlineExceeded")],
        ),
    )
    job = observe_job(retry)
    assert (job.recipe_key, job.attempt, job.retry_token) == ("12" * 32, 2, "1700000000")
    assert (job.finished, job.condition_reason, job.failed) == ("Failed", "DeadlineExceeded", 1)
    first = client.V1Job(
        metadata=client.V1ObjectMeta(name="digits-1212121212", annotations={"optimodel.io/attempt": "x"}),
        status=client.V1JobStatus(active=1),
    )
    assert (observe_job(first).attempt, observe_job(first).finished, observe_job(first).retry_token) == (1, None, None)
