"""Credentials in camera URLs never reach a log line or a message shown to the user."""

from __future__ import annotations

import io
import logging

import pytest

from sauron.logs import LOG_FORMAT, RedactingFormatter, redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:s3cretpw@192.0.2.1:554/s1", "rtsp://admin:***@192.0.2.1:554/s1"),
        (
            "opening 'rtsps://u:p@ss@cam.local/x': refused",
            "opening 'rtsps://u:***@cam.local/x': refused",
        ),
        ("http://cam/snap.cgi?user=a&pwd=xyz&ch=1", "http://cam/snap.cgi?user=a&pwd=***&ch=1"),
        ("http://cam/s?Password=xyz", "http://cam/s?Password=***"),
        ("rtsp://192.0.2.1/stream1", "rtsp://192.0.2.1/stream1"),  # nothing to hide
        ("https://user@host/path", "https://user@host/path"),  # a user name is no secret
        ("mail alice@example.org", "mail alice@example.org"),
    ],
)
def test_redact_hides_passwords_only(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_log_lines_are_redacted_with_their_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logger = logging.getLogger("sauron.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("camera source %r failed", "rtsp://admin:s3cretpw@192.0.2.1/s1")
        try:
            raise OSError("cannot open 'rtsp://admin:s3cretpw@192.0.2.1/s1'")
        except OSError:
            logger.exception("camera door")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "s3cretpw" not in text
    assert "camera source 'rtsp://admin:***@192.0.2.1/s1' failed" in text
    assert "OSError: cannot open 'rtsp://admin:***@192.0.2.1/s1'" in text
    assert "Traceback" in text  # the traceback is kept, redacted
