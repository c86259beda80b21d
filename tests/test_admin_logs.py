"""Operator logs (drip/logs.py): one line per event, JSON when asked, and never an email
address in full, whichever logger writes it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from drip.config import Settings
from drip.ops.logs import DripHandler, configure_logging, mask_emails


@pytest.fixture()
def root_logger() -> Iterator[logging.Logger]:
    """Restores the root logger's handlers and level after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def emitted(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line]


def test_addresses_keep_their_first_letter_and_domain_only() -> None:
    assert mask_emails("to ann.lee+drip@example.co.uk, b@x.org") == (
        "to a***@example.co.uk, b***@x.org"
    )
    assert mask_emails("delivery 42 sent, 3 retrying") == "delivery 42 sent, 3 retrying"


def test_json_lines_carry_extra_fields_and_mask_addresses(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_json=True))
    logging.getLogger("drip.sending.delivery").warning(
        "refused %s", "eve@example.com", extra={"delivery_ids": [7, 8], "to": "eve@example.com"}
    )
    (line,) = emitted(capsys)
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "drip.sending.delivery"
    assert entry["message"] == "refused e***@example.com"
    assert entry["delivery_ids"] == [7, 8]
    assert entry["to"] == "e***@example.com"
    assert "eve@" not in line


def test_a_traceback_stays_on_its_event_line_and_is_masked_too(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    for as_json in (False, True):
        configure_logging(Settings(log_json=as_json))
        try:
            raise ValueError("no mailbox for zed@example.com")
        except ValueError:
            logging.getLogger("drip.tasks").exception("send failed for delivery 9")
        (line,) = emitted(capsys)
        assert "delivery 9" in line and "ValueError" in line
        assert "z***@example.com" in line and "zed@" not in line


def test_configuring_twice_never_doubles_a_line(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings())
    configure_logging(Settings())
    assert sum(isinstance(h, DripHandler) for h in root_logger.handlers) == 1
    logging.getLogger("drip").info("tick materialized=3")
    assert len(emitted(capsys)) == 1
