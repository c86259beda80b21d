"""Addresses are checked as email-validator checks them, even where drip checks a plain
local part itself and only looks the domain up (cached): the same normalized address or
the same refusal, for every kind of address."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email

from drip.subscribers.validation import (
    InvalidInput,
    clean_email,
    has_control_characters,
    normalized_email,
)

ADDRESSES = [
    # plain, as nearly everyone types them
    "pat@example.com",
    "Pat.Smith@Example.COM",
    "o'neil+drip@mail.example.org",
    "a!#$%&'*+-/=?^_`{|}~z@example.com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a." + "b" * 62 + "@example.com",
    # local parts the plain check leaves to the validator
    ".pat@example.com",
    "pat.@example.com",
    "pa..t@example.com",
    '"quoted pat"@example.com',
    '"pat"@example.com',
    "pät@example.com",
    "用户@例子.广告",
    "pat@@example.com",
    "@example.com",
    "pat@",
    "pat",
    "pat smith@example.com",
    "Pat <pat@example.com>",
    # domains: the validator decides, cached or not
    "pat@EXAMPLE.com",
    "pat@bücher.example",
    "pat@xn--bcher-kva.example",
    "pat@example",
    "pat@localhost",
    "pat@example.local",
    "pat@example.invalid",
    "pat@example.test",
    "pat@mail.example.com.",
    "pat@-example.com",
    "pat@exa_mple.com",
    "pat@[192.0.2.1]",
    "pat@192.0.2.1",
    "pat@" + "a" * 64 + ".com",
    "pat@" + ".".join(["a" * 60] * 5) + ".com",
    "pat@example.123",
]


def reference(address: str) -> str:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        return f"refused: {exc}"


def ours(address: str) -> str:
    try:
        return normalized_email(address)
    except EmailNotValidError as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_same_answer_as_email_validator(address: str) -> None:
    assert ours(address) == reference(address)
    assert ours(address) == reference(address), "and again, from the domain cache"


def test_a_stored_address_is_lower_cased_and_a_refusal_names_the_field() -> None:
    assert clean_email("  Pat.Smith@Example.COM ") == "pat.smith@example.com"
    with pytest.raises(InvalidInput) as refused:
        clean_email("pat@example")
    assert refused.value.field == "email"
    assert refused.value.message == reference("pat@example").removeprefix("refused: ")


@pytest.mark.parametrize(
    ("value", "control"),
    [
        ("plain text", False),
        ("tab\there", True),
        ("line\r\nbreak", True),
        ("nul\x00", True),
        ("del\x7f", True),
        ("zero\u200bwidth", True),  # Cf
        ("bidi\u202eoverride", True),  # Cf
        ("non-breaking\u00a0space", False),
        ("ünïcödé", False),
        ("c1\x85control", True),  # Cc outside ASCII
    ],
)
def test_control_characters_are_found_in_ascii_and_beyond(value: str, control: bool) -> None:
    assert has_control_characters(value) is control
