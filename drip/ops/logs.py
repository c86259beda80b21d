"""Logging: one line per event, JSON when DRIP_LOG_JSON=1, and never an email address in full.

Addresses are masked in the finished line (message, extra fields and
tracebacks alike), so a log call anywhere in drip, Celery or a library cannot
leak one: ann.lee@example.com becomes a***@example.com. Delivery ids and
other ids pass through untouched; pass them as ``extra={"delivery_ids": [...]}``
and the JSON line carries them as fields.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from drip.config import Settings

_LOCAL_CHAR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
EMAIL = re.compile(rf"({_LOCAL_CHAR})(?:{_LOCAL_CHAR}|\.)*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# The attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def mask_emails(text: str) -> str:
    """Keep the first character and the domain: enough to tell cases apart, not to mail anyone."""
    return EMAIL.sub(r"\1***@\2", text)


class MaskingFormatter(logging.Formatter):
    """The plain format, one event per line, addresses masked."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # A traceback spans lines; keep the event on one so a line reader never splits it.
        return mask_emails(line).replace("\n", " | ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask_emails(json.dumps(entry, default=str, ensure_ascii=False))


class DripHandler(logging.StreamHandler[TextIO]):
    """Marks the handler drip installed, so configuring twice never doubles every line."""


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, DripHandler)]:
        root.removeHandler(handler)
    handler = DripHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else MaskingFormatter(PLAIN_FORMAT))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
