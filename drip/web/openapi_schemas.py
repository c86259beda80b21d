"""JSON Schema pieces for the OpenAPI document: every constraint the API checks, stated.

A fuzzer (and an integrator) may rely on this: a request that meets the schema is
never refused for a reason the schema does not state.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache
from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES

from drip.sending.schedule import known_zones
from drip.subscribers.validation import MAX_EMAIL_LENGTH, MAX_NAME_LENGTH


@lru_cache(maxsize=1)
def no_control_characters() -> str:
    """A pattern refusing what validation.has_control_characters refuses (Cc and Cf)."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) in ("Cc", "Cf"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    parts = [
        _escape(low) if low == high else f"{_escape(low)}-{_escape(high)}" for low, high in ranges
    ]
    return f"^[^{''.join(parts)}]*$"


def _escape(code: int) -> str:
    # \\uXXXX for the Basic Multilingual Plane (ECMA-262 and Python agree); the
    # character itself beyond it, where ECMA-262 without the u flag has no escape.
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


def timezone_schema() -> dict[str, Any]:
    return {
        "description": "IANA zone (Europe/Berlin); UTC when absent, null or empty",
        "enum": [*known_zones(), "", None],
    }


def email_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "email",
        "maxLength": MAX_EMAIL_LENGTH,
        "pattern": _not_special_use_domain(),
        "description": "An address on a public domain: special-use names (RFC 6761: "
        + ", ".join(SPECIAL_USE_DOMAIN_NAMES)
        + ") are refused, as mail to them never arrives",
    }


def _not_special_use_domain() -> str:
    # ECMA-262 patterns have no inline case-insensitive flag: each letter gets a class.
    names = "|".join(
        "".join(f"[{ch}{ch.upper()}]" if ch.isalpha() else ch for ch in name)
        for name in SPECIAL_USE_DOMAIN_NAMES
    )
    return f"^(?!.*@(?:.*\\.)?(?:{names})\\.?$)"


def first_name_schema() -> dict[str, Any]:
    return {
        "type": ["string", "null"],
        "maxLength": MAX_NAME_LENGTH,
        "pattern": no_control_characters(),
    }


ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "field": {"type": ["string", "null"]},
                "message": {"type": "string"},
            },
            "required": ["field", "message"],
        }
    },
    "required": ["error"],
}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}
