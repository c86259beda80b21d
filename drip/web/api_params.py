"""Strict parsing of the API's query parameters: a bad value is a 422 naming the parameter."""

from __future__ import annotations

import re
from datetime import date

from flask import request

from drip.integrations.feed import Position
from drip.subscribers.validation import InvalidInput

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL
ID_CURSOR = re.compile(r"[0-9]{1,9}")
FEED_CURSOR = re.compile(r"([0-9]{1,17})\.([0-9]{1,2})\.([0-9]{1,9})")


def _raw(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise InvalidInput(name, "give it once")
    return values[0] if values else None


def integer(name: str, *, default: int | None, low: int, high: int) -> int | None:
    raw = _raw(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,12}", raw) or not low <= int(raw) <= high:
        raise InvalidInput(name, f"must be a whole number from {low} to {high}")
    return int(raw)


def limit() -> int:
    value = integer("limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    return value if value is not None else DEFAULT_LIMIT


def choice(name: str, options: tuple[str, ...]) -> str | None:
    raw = _raw(name)
    if raw is not None and raw not in options:
        raise InvalidInput(name, f"must be one of {', '.join(options)}")
    return raw


def day(name: str) -> date | None:
    raw = _raw(name)
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
        raise InvalidInput(name, "must be a date, YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(name, "must be a date, YYYY-MM-DD") from None


def text(name: str, max_length: int) -> str | None:
    raw = _raw(name)
    if raw is not None and len(raw) > max_length:
        raise InvalidInput(name, f"is longer than {max_length} characters")
    return raw


def id_cursor() -> int:
    raw = _raw("cursor")
    if raw is None:
        return 0
    if not ID_CURSOR.fullmatch(raw) or int(raw) > MAX_ID:
        raise InvalidInput("cursor", "pass back next_cursor from the previous page")
    return int(raw)


def feed_cursor() -> Position:
    raw = _raw("cursor")
    if raw is None:
        return Position()
    match = FEED_CURSOR.fullmatch(raw)
    if match is None or int(match[3]) > MAX_ID:
        raise InvalidInput("cursor", "pass back next_cursor from the previous page")
    return Position(int(match[1]), int(match[2]), int(match[3]))


def feed_cursor_text(position: Position) -> str:
    return f"{position.micros}.{position.kind}.{position.row}"
