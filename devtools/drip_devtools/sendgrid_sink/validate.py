"""Validate a v3 mail-send body as SendGrid does, in one pass over the personalizations.

Limits from SendGrid's v3 mail-send reference: 1000 personalizations and 1000
recipients per request, an address only once, ``custom_args`` under 10,000
bytes, 10 categories, ``substitutions`` up to 10,000 bytes per
personalization, ``send_at`` at most 72 hours ahead, no To/From/Subject/...
through ``headers``. Every problem found becomes one error entry, with a field
path such as ``personalizations.0.to.0.email``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from drip_devtools.sendgrid_sink.answers import HELP, error_entry

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
CUSTOM_ARGS_LIMIT = 10_000  # the total must stay under this
SUBSTITUTIONS_LIMIT = 10_000  # the total may reach this
MAX_CATEGORIES = 10
MAX_SEND_AHEAD = 72 * 3600
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
RECIPIENT_KINDS = ("to", "cc", "bcc")
_EMAIL = re.compile(r"[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+")

NO_PERSONALIZATIONS = (
    "The personalizations field is required and must have at least one personalization."
)
TOO_MANY_PERSONALIZATIONS = (
    "The personalization block is limited to 1000 personalizations per API request. You have "
    "provided {n} personalizations. Please consider splitting this into multiple requests and "
    "resending your request."
)
TOO_MANY_RECIPIENTS = "There is a limit of 1000 total recipients (to + cc + bcc) per request."
NO_TO = (
    "The to array is required for all personalization objects, and must have at least one "
    "email object with a valid email address."
)
INVALID_ADDRESS = "Does not contain a valid address."
DUPLICATE_IN_PERSONALIZATION = (
    "Each email address in the personalization block should be unique between to, cc, and "
    "bcc. We found the first duplicate instance of [{email}] in the {path} field."
)
DUPLICATE_IN_REQUEST = (
    "Each unique email address in the personalizations array should only be included once. "
    "You have included [{email}] more than once."
)
NO_FROM = (
    "The from object must be provided for every email send. It is an object that requires "
    'the email parameter, but may also contain a name parameter.  e.g. {"email" : '
    '"example@example.com"}  or {"email" : "example@example.com", "name" : "Example '
    'Recipient"}.'
)
NO_SUBJECT = (
    "The subject is required. You can get around this requirement if you use a template with "
    "a subject defined or if every personalization has a subject defined."
)
NO_CONTENT = (
    "Unless a valid template_id is provided, the content parameter is required. There must be "
    "at least one defined content block. We typically suggest both text/plain and text/html "
    "blocks are included, but only one block is required."
)
NO_CONTENT_TYPE = "The content type must be provided, e.g. text/plain or text/html."
EMPTY_CONTENT = "The content value must be a string at least one character in length."
CONTENT_ORDER = (
    "If present, text/plain must be first, followed by text/html, followed by any other content."
)
CONTENT_TWICE = "If present, text/plain and text/html may only be provided once."
CUSTOM_ARGS_TOO_BIG = (
    "custom_args (a personalization's merged over the message's) must total less than 10000 "
    "bytes; these total {n} bytes."
)
SUBSTITUTIONS_TOO_BIG = (
    "The substitutions of a personalization may total at most 10000 bytes; these total {n} bytes."
)
TOO_MANY_CATEGORIES = "Too many categories. A message may have at most 10 categories."
RESERVED_HEADER = (
    "The header {name} is reserved and cannot be set through headers: x-sg-id, x-sg-eid, "
    "received, dkim-signature, Content-Type, Content-Transfer-Encoding, To, From, Subject, "
    "Reply-To, CC, BCC."
)
SEND_AT_TOO_LATE = "The send_at parameter cannot be scheduled more than 72 hours in advance."
WRONG_TYPE = "Invalid type. Expected: {expected}, given: {kind}."


def is_email(value: Any) -> bool:
    return isinstance(value, str) and _EMAIL.fullmatch(value) is not None


def address_field(where: tuple[int, str, int]) -> str:
    """The field path SendGrid names for an address, e.g. personalizations.0.to.0.email."""
    i, kind, j = where
    return f"personalizations.{i}.{kind}.{j}.email"


def _kind(value: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}.get(
        type(value), "null" if value is None else "object"
    )


@dataclass
class Checked:
    """The verdict on one body, plus what the rest of the request handling needs from it."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    # lowercased address -> where it is: (personalization, "to"|"cc"|"bcc", position)
    addresses: dict[str, tuple[int, str, int]] = field(default_factory=dict)
    personalizations: int = 0
    sandbox: bool = False
    from_email: str = ""

    @property
    def recipients(self) -> int:
        return len(self.addresses)


def check(body: Any, now: float) -> Checked:
    checked = Checked()
    if not isinstance(body, dict):
        checked.problems.append(error_entry("Bad Request"))
        return checked
    _Check(body, now, checked).run()
    return checked


class _Check:
    def __init__(self, body: dict[str, Any], now: float, checked: Checked) -> None:
        self.body = body
        self.now = now
        self.out = checked
        self.base_args: dict[str, Any] = {}

    def problem(self, message: str, field: str, anchor: str | None = None) -> None:
        self.out.problems.append(error_entry(message, field, HELP + (anchor or field)))

    def wrong_type(self, expected: str, value: Any, field: str, anchor: str) -> None:
        self.problem(WRONG_TYPE.format(expected=expected, kind=_kind(value)), field, anchor)

    def strings_only(self, mapping: dict[str, Any], path: str, anchor: str) -> None:
        """SendGrid takes only string values in custom_args, substitutions and headers."""
        for key, value in mapping.items():
            if not isinstance(value, str):
                self.wrong_type("string", value, f"{path}.{key}", anchor)

    def run(self) -> None:
        body = self.body
        self.out.sandbox = _sandbox(body)
        self._from(body.get("from"))
        self._reply_to(body.get("reply_to"))
        self._content(body.get("content"))
        self._categories(body.get("categories"))
        self._headers(body.get("headers"), "headers")
        self._send_at(body.get("send_at"), "send_at")
        self.base_args = self._custom_args_types(body.get("custom_args"), "custom_args")
        self._custom_args_size(self.base_args, "custom_args")
        every_has_subject = self._personalizations(body.get("personalizations"))
        has_subject = _nonempty_str(body.get("subject")) or "template_id" in body
        if not has_subject and not every_has_subject:
            self.problem(NO_SUBJECT, "subject")

    def _from(self, sender: Any) -> None:
        email = sender.get("email") if isinstance(sender, dict) else None
        if email is None:
            self.problem(NO_FROM, "from.email", "from")
        elif not is_email(email):
            self.problem(INVALID_ADDRESS, "from.email", "from")
        else:
            self.out.from_email = email

    def _reply_to(self, reply_to: Any) -> None:
        if reply_to is not None and not (
            isinstance(reply_to, dict) and is_email(reply_to.get("email"))
        ):
            self.problem(INVALID_ADDRESS, "reply_to.email", "reply_to")

    def _content(self, content: Any) -> None:
        if content is None and "template_id" in self.body:
            return
        if not isinstance(content, list) or not content:
            self.problem(NO_CONTENT, "content")
            return
        types: list[str] = []
        for i, item in enumerate(content):
            item = item if isinstance(item, dict) else {}
            ctype, value = item.get("type"), item.get("value")
            if isinstance(ctype, str) and ctype:
                types.append(ctype.lower())
            else:
                self.problem(NO_CONTENT_TYPE, f"content.{i}.type", "content.type")
            if not _nonempty_str(value):
                self.problem(EMPTY_CONTENT, f"content.{i}.value", "content.value")
        self._content_order(types)

    def _content_order(self, types: list[str]) -> None:
        if types.count("text/plain") > 1 or types.count("text/html") > 1:
            self.problem(CONTENT_TWICE, "content")
            return
        has_plain = "text/plain" in types
        html_at = types.index("text/html") if "text/html" in types else None
        if (has_plain and types[0] != "text/plain") or html_at not in (None, int(has_plain)):
            self.problem(CONTENT_ORDER, "content")

    def _categories(self, categories: Any) -> None:
        if categories is None:
            return
        if not isinstance(categories, list):
            self.wrong_type("array", categories, "categories", "categories")
            return
        if len(categories) > MAX_CATEGORIES:
            self.problem(TOO_MANY_CATEGORIES, "categories")
        for i, category in enumerate(categories):
            if not isinstance(category, str):
                self.wrong_type("string", category, f"categories.{i}", "categories")

    def _headers(self, headers: Any, path: str) -> None:
        if headers is None:
            return
        if not isinstance(headers, dict):
            self.wrong_type("object", headers, path, "headers")
            return
        for name in headers:
            if name.lower() in RESERVED_HEADERS:
                self.problem(RESERVED_HEADER.format(name=name), f"{path}.{name}", "headers")
        self.strings_only(headers, path, "headers")

    def _send_at(self, send_at: Any, path: str) -> None:
        if send_at is None:
            return
        if not isinstance(send_at, int) or isinstance(send_at, bool):
            self.wrong_type("integer", send_at, path, "send_at")
        elif send_at > self.now + MAX_SEND_AHEAD:
            self.problem(SEND_AT_TOO_LATE, path, "send_at")

    def _custom_args_types(self, args: Any, path: str) -> dict[str, Any]:
        """Check custom_args is an object of strings (SendGrid refuses numbers there)."""
        if args is None:
            return {}
        if not isinstance(args, dict):
            self.wrong_type("object", args, path, "custom_args")
            return {}
        self.strings_only(args, path, "custom_args")
        return args

    def _personalizations(self, items: Any) -> bool:
        """Check every personalization; say whether each one carries its own subject."""
        if not isinstance(items, list) or not items:
            self.problem(NO_PERSONALIZATIONS, "personalizations")
            return False
        if len(items) > MAX_PERSONALIZATIONS:
            message = TOO_MANY_PERSONALIZATIONS.format(n=len(items))
            self.problem(message, "personalizations")
            return False
        self.out.personalizations = len(items)
        every_has_subject = True
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.wrong_type("object", item, f"personalizations.{i}", "personalizations")
                continue
            every_has_subject = self._personalization(i, item) and every_has_subject
        if len(self.out.addresses) > MAX_RECIPIENTS:
            self.problem(TOO_MANY_RECIPIENTS, "personalizations")
        return every_has_subject

    def _personalization(self, i: int, item: dict[str, Any]) -> bool:
        path = f"personalizations.{i}"
        if not item.get("to") or not isinstance(item["to"], list):
            self.problem(NO_TO, f"{path}.to", "personalizations.to")
        mine: set[str] = set()
        for kind in RECIPIENT_KINDS:
            if kind in item:
                self._recipients(i, kind, item[kind], mine)
        if "headers" in item:
            self._headers(item["headers"], f"{path}.headers")
        if "send_at" in item:
            self._send_at(item["send_at"], f"{path}.send_at")
        if "substitutions" in item:
            self._substitutions(item["substitutions"], f"{path}.substitutions")
        if "custom_args" in item:
            self._merged_custom_args(item["custom_args"], f"{path}.custom_args")
        return _nonempty_str(item.get("subject"))

    def _recipients(self, i: int, kind: str, recipients: Any, mine: set[str]) -> None:
        """Check to, cc or bcc of personalization ``i``; ``mine`` holds its addresses so far."""
        if not isinstance(recipients, list):
            self.wrong_type("array", recipients, f"personalizations.{i}.{kind}", "personalizations")
            return
        addresses = self.out.addresses
        for j, recipient in enumerate(recipients):
            email = recipient.get("email") if isinstance(recipient, dict) else None
            if not isinstance(email, str) or _EMAIL.fullmatch(email) is None:
                self.problem(INVALID_ADDRESS, address_field((i, kind, j)), "personalizations")
                continue
            key = email.lower()
            if key in mine:
                where = f"personalizations.{i}.{kind}"
                message = DUPLICATE_IN_PERSONALIZATION.format(email=email, path=where)
                self.problem(message, f"personalizations.{i}", "personalizations")
            elif key in addresses:
                message = DUPLICATE_IN_REQUEST.format(email=email)
                self.problem(message, address_field((i, kind, j)), "personalizations")
            else:
                addresses[key] = (i, kind, j)
            mine.add(key)

    def _substitutions(self, subs: Any, path: str) -> None:
        if not isinstance(subs, dict):
            self.wrong_type("object", subs, path, "substitutions")
            return
        self.strings_only(subs, path, "substitutions")
        size = _size(subs, SUBSTITUTIONS_LIMIT)
        if size > SUBSTITUTIONS_LIMIT:
            self.problem(SUBSTITUTIONS_TOO_BIG.format(n=size), path, "substitutions")

    def _merged_custom_args(self, args: Any, path: str) -> None:
        own = self._custom_args_types(args, path)
        if own:
            self._custom_args_size({**self.base_args, **own}, path)

    def _custom_args_size(self, args: dict[str, Any], path: str) -> None:
        size = _size(args, CUSTOM_ARGS_LIMIT)
        if size >= CUSTOM_ARGS_LIMIT:
            self.problem(CUSTOM_ARGS_TOO_BIG.format(n=size), path, "custom_args")


def _size(mapping: dict[str, Any], limit: int) -> int:
    """Bytes of keys and values, as SendGrid counts custom_args and substitutions.

    Counted in characters first: UTF-8 takes at most 4 bytes a character, so a
    small total needs no encoding (this runs for every personalization).
    """
    try:
        chars = sum(map(len, mapping)) + sum(map(len, mapping.values()))
    except TypeError:  # a value that is no string: already reported, count its text
        chars = limit
    if chars * 4 < limit:
        return chars
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in mapping.items())


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _sandbox(body: dict[str, Any]) -> bool:
    settings = body.get("mail_settings")
    sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
    return isinstance(sandbox, dict) and sandbox.get("enable") is True
