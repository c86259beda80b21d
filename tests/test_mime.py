"""Building RFC 5322 messages (drip.mail.mime)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from drip.mail.mime import build_message

UNSUBSCRIBE = "https://drip.example/u/" + "eyJkIjo0MiwiayI6InVuc3ViIn0." * 4 + "Zm9v"


def _build(**overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "from_email": "lessons@houseplants.example",
        "from_name": "Fern at Houseplants",
        "to_email": "ann@example.com",
        "to_name": "Ann Smith",
        "subject": "Day 1: Light is food",
        "html": "<p>Hello Ann, café</p>",
        "text": "Hello Ann, café\n",
    } | overrides
    return build_message(**arguments)


def _parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def test_message_is_multipart_alternative_text_first_then_html() -> None:
    message = _parse(_build())

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    contents = [part.get_content().replace("\r\n", "\n") for part in parts]
    assert contents == ["Hello Ann, café\n", "<p>Hello Ann, café</p>\n"]


def test_address_headers_subject_date_and_message_id() -> None:
    when = datetime(2025, 3, 4, 8, 0, tzinfo=UTC)

    message = _parse(_build(reply_to="hello@houseplants.example", date=when))

    assert message["From"] == "Fern at Houseplants <lessons@houseplants.example>"
    assert message["To"] == "Ann Smith <ann@example.com>"
    assert message["Reply-To"] == "hello@houseplants.example"
    assert message["Subject"] == "Day 1: Light is food"
    assert parsedate_to_datetime(message["Date"]) == when
    assert message["Message-ID"].endswith("@houseplants.example>")
    assert message["MIME-Version"] == "1.0"


def test_a_given_message_id_is_kept() -> None:
    message = _parse(_build(message_id="<delivery-42@houseplants.example>"))

    assert message["Message-ID"] == "<delivery-42@houseplants.example>"


def test_without_a_date_the_message_is_dated_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    message = _parse(_build())

    assert before <= parsedate_to_datetime(message["Date"]) <= datetime.now(UTC)


def test_an_empty_to_name_gives_a_bare_address() -> None:
    assert _parse(_build(to_name=""))["To"] == "ann@example.com"


def test_non_ascii_names_and_subject_are_encoded() -> None:
    raw = _build(from_name="Jürgen Bäcker", to_name="Zoë", subject="Tag 2: Füttern")

    assert raw.isascii()
    assert b"=?utf-8?" in raw
    message = _parse(raw)
    assert message["From"].addresses[0].display_name == "Jürgen Bäcker"
    assert message["To"].addresses[0].display_name == "Zoë"
    assert message["Subject"] == "Tag 2: Füttern"


def test_a_name_with_a_comma_stays_one_address() -> None:
    message = _parse(_build(to_name="Smith, Ann"))

    assert len(message["To"].addresses) == 1
    assert message["To"].addresses[0].display_name == "Smith, Ann"


def test_list_unsubscribe_headers_stay_plain_uris() -> None:
    headers = {
        "List-Unsubscribe": f"<{UNSUBSCRIBE}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }

    raw = _build(headers=headers)

    # An encoded-word would hide the one-click URI.
    assert f"List-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in raw
    message = _parse(raw)
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_lines_end_in_crlf() -> None:
    raw = _build()

    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "field", ["subject", "to_name", "from_name", "to_email", "from_email", "reply_to"]
)
@pytest.mark.parametrize("evil", ["\r\nBcc: victim@example.com", "\nBcc: x@y", "\rX", "a\x00b"])
def test_control_characters_in_any_field_are_refused(field: str, evil: str) -> None:
    value = "ann@example.com" + evil if "email" in field or field == "reply_to" else "Ann" + evil

    with pytest.raises(ValueError, match="control character"):
        _build(**{field: value})


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Tag": "a\r\nBcc: victim@example.com"},
        {"X-Tag\r\nBcc": "victim@example.com"},
        {"X-Tag: Bcc": "x"},
        {"X Tag": "x"},
        {"": "x"},
    ],
)
def test_injection_through_extra_headers_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        _build(headers=headers)


@pytest.mark.parametrize("name", ["Subject", "to", "Content-Type", "Bcc"])
def test_extra_headers_cannot_replace_the_message_own(name: str) -> None:
    with pytest.raises(ValueError, match="through its own argument"):
        _build(headers={name: "x"})


def test_a_non_ascii_list_unsubscribe_is_refused() -> None:
    with pytest.raises(ValueError, match="must be ASCII"):
        _build(headers={"List-Unsubscribe": "<https://drip.example/u/é>"})


def test_a_naive_date_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        _build(date=datetime(2025, 3, 4, 8, 0))


def test_an_address_without_at_is_refused() -> None:
    with pytest.raises(ValueError, match="not an email address"):
        _build(to_email="ann.example.com")
