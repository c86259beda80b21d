"""Checking what a person typed, before anything is stored. One error per field."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

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
    # could split a header or hide text. In ASCII those are exactly the
    # characters str.isprintable() refuses (Cc; no ASCII character is Cf).
    if value.isascii():
        return not value.isprintable()
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


# An unquoted ASCII local part (RFC 5322 section 3.2.3, dot-atom) within RFC 5321's 64 octets.
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_LOCAL_PART = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
MAX_LOCAL_PART_LENGTH = 64


@lru_cache(maxsize=4096)
def _valid_domain(domain: str) -> str | None:
    """The domain as email_validator normalizes it, or None where it refuses it.

    Checking a domain (IDNA, its labels, special-use names) is most of the
    validator's work, and signups come from a few thousand domains at most.
    """
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def normalized_email(value: str) -> str:
    """email_validator's normalized address; a plain local part is checked without it.

    Raises EmailNotValidError. For an unquoted ASCII local part (what nearly
    everyone types) the validator would only match it against the same
    grammar and keep it as it is, so only its domain is looked up (cached).
    Every other address goes through the validator whole, for its message.
    """
    local, at, domain = value.rpartition("@")
    if at and len(local) <= MAX_LOCAL_PART_LENGTH and _PLAIN_LOCAL_PART.match(local):
        checked = _valid_domain(domain)
        if checked is not None:
            return f"{local}@{checked}"
    return validate_email(value, check_deliverability=False).normalized


def clean_email(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("email", "enter your email address")
    value = raw.strip()
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidInput("email", f"is longer than {MAX_EMAIL_LENGTH} characters")
    if has_control_characters(value):
        raise InvalidInput("email", "must not contain line breaks or control characters")
    try:
        normalized = normalized_email(value)
    except EmailNotValidError as exc:
        raise InvalidInput("email", str(exc)) from None
    # Stored lower-cased: one person, one row, whatever case they typed.
    return normalized.lower()


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
