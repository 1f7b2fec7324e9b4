"""Secret values never reach a log record, whatever logs them and at whatever level (controller/redact.py)."""

from __future__ import annotations

import base64
import logging

import pytest

from optimodel.controller import redact


def test_registered_secrets_never_reach_a_log_record(caplog: pytest.LogCaptureFixture) -> None:
    redact.install(verbose=True)
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    redact.register("AKIAEXAMPLE1234", secret)
    encoded = base64.b64encode(secret.encode()).decode()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("anything").debug("response body: %s", {"data": {"k": encoded}, "raw": secret})
        try:
            raise ValueError(f"boom {secret}")
        except ValueError:
            logging.getLogger("anything").exception("failed with AKIAEXAMPLE1234")
    text = caplog.text + "".join(record.exc_text or "" for record in caplog.records)
    assert secret not in text and encoded not in text and "AKIAEXAMPLE1234" not in text
    assert redact.REDACTED in text
    assert logging.getLogger("kubernetes").getEffectiveLevel() >= logging.INFO
