"""Checking what a person typed, before anything is stored. One error per field."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from drip.sending.schedule import is_known_zone

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
MAX_NAME_LENGTH = 80


class InvalidInput(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SignupInput:
    email: str
    first_name: str
    timezone: str


def has_control_characters(value: str) -> bool:
    # Cc and Cf cover CR, LF, NUL, tabs and invisible format characters that
    # could split a header or hide text.
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def clean_email(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("email", "enter your email address")
    value = raw.strip()
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidInput("email", f"is longer than {MAX_EMAIL_LENGTH} characters")
    if has_control_characters(value):
        raise InvalidInput("email", "must not contain line breaks or control characters")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput("email", str(exc)) from None
    # Stored lower-cased: one person, one row, whatever case they typed.
    return result.normalized.lower()


def clean_first_name(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("first_name", "must be text")
    if has_control_characters(raw):
        raise InvalidInput("first_name", "must not contain line breaks or control characters")
    value = " ".join(raw.split())
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput("first_name", f"is longer than {MAX_NAME_LENGTH} characters")
    return value


def clean_timezone(raw: object) -> str:
    if raw in (None, ""):
        return "UTC"
    if not isinstance(raw, str) or not is_known_zone(raw):
        raise InvalidInput("timezone", f"unknown time zone {str(raw)[:64]!r}; use an IANA name")
    return raw


def clean_signup(email: object, first_name: object, timezone: object) -> SignupInput:
    return SignupInput(clean_email(email), clean_first_name(first_name), clean_timezone(timezone))


# Where an integrator says consent was given (e.g. checkout:acme): a short token, no spaces.
CONSENT_SOURCE_PATTERN = r"^[A-Za-z0-9._:/@+-]{1,150}$"


def clean_consent_source(raw: object) -> str:
    """The source of a consent an API caller vouches for; it must say it was confirmed."""
    if not isinstance(raw, dict) or set(raw) != {"source", "confirmed"}:
        raise InvalidInput("consent", "must be an object with exactly source and confirmed")
    if raw["confirmed"] is not True:
        raise InvalidInput("consent", "confirmed must be true: the person confirmed with you")
    source = raw["source"]
    if not isinstance(source, str) or not re.fullmatch(CONSENT_SOURCE_PATTERN, source):
        raise InvalidInput("consent", "source must be 1 to 150 letters, digits or ._:/@+-")
    return source
