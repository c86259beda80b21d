"""`drip subscribers import`: consented subscribers from a CSV file, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from drip.data.models import Consent, Enrollment, Subscriber, Suppression
from drip.subscribers.importer import (
    ImportContext,
    ImportReport,
    clean_import_email,
    clean_import_name,
    import_csv,
)
from drip.subscribers.privacy import erase
from drip.subscribers.subscriptions import email_hash
from drip.subscribers.validation import InvalidInput, clean_email, clean_first_name
from tests.cli import run_cli
from tests.conftest import Stack, wait_until
from tests.mailbox import messages

HEADER = "email,first_name,timezone\n"


def write_csv(tmp_path: Path, body: str, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def count(stack: Stack, model: type) -> int:
    with stack.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_imported_subscribers_are_confirmed_with_consent_and_get_lesson_one(
    stack: Stack, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        HEADER + "ann@example.com,Ann,Europe/Paris\nBob@Example.org,,\ncy@example.net,Cy,UTC\n",
    )
    before = datetime.now(UTC)
    result = run_cli(stack, "subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "imported 3, skipped 0 existing, skipped 0 suppressed, 0 bad rows,"
    )
    course = stack.services.course
    with stack.session() as session:
        people = {s.email: s for s in session.scalars(select(Subscriber))}
        consents = session.scalars(select(Consent)).all()
        enrollments = session.scalars(select(Enrollment)).all()
    assert set(people) == {"ann@example.com", "bob@example.org", "cy@example.net"}
    assert people["ann@example.com"].first_name == "Ann"
    assert people["ann@example.com"].timezone == "Europe/Paris"
    assert people["bob@example.org"].timezone == "UTC"
    assert {s.status for s in people.values()} == {"active"}
    assert len(consents) == 3
    for consent in consents:
        assert consent.source == "import:people.csv"
        assert consent.text == course.landing.consent
        assert consent.text_version == course.consent_version
        assert consent.confirmed_at is not None and consent.confirmed_at >= before
    assert [(e.status, e.next_lesson) for e in enrollments] == [("active", 1)] * 3
    assert all(e.next_due_at is not None and e.next_due_at >= before for e in enrollments)

    # Lesson 1 is due now: the next tick hands it to the real worker.
    stack.clock.set(datetime.now(UTC) + timedelta(seconds=1))
    stack.tick()
    for address in people:
        mail = wait_until(lambda a=address: messages(stack.outbox, to=a))
        assert str(mail[0]["Subject"]).startswith("Day 1")


def test_bad_rows_are_reported_with_their_line_and_the_rest_imported(
    stack: Stack, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        HEADER
        + "good1@example.com,One,UTC\n"  # line 2
        + "not-an-address,Two,UTC\n"  # line 3
        + 'crlf@example.com,"Eve\r\nBcc: x@evil.test",UTC\n'  # lines 4-5
        + "zone@example.com,Zed,Mars/Olympus\n"  # line 6
        + "short@example.com,Shorty\n"  # line 7
        + "good2@example.com,Two,America/New_York\n",  # line 8
    )
    result = run_cli(stack, "subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    problems = result.stderr.splitlines()
    assert problems[0].startswith("people.csv: line 3: email: ")
    assert problems[1] == (
        "people.csv: line 5: first_name: must not contain line breaks or control characters"
    )
    assert problems[2].startswith("people.csv: line 6: timezone: unknown time zone 'Mars/Olympus'")
    assert problems[3] == "people.csv: line 7: row: expected 3 fields, found 2"
    assert len(problems) == 4
    assert "imported 2, skipped 0 existing, skipped 0 suppressed, 4 bad rows" in result.stdout
    with stack.session() as session:
        imported = set(session.scalars(select(Subscriber.email)))
    assert imported == {"good1@example.com", "good2@example.com"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("email,phone\nann@example.com,555\n", "unknown column 'phone' in the header"),
        ("ann@example.com,Ann,UTC\n", "the first line is an address, not a header"),
        ("first_name,timezone\nAnn,UTC\n", "no email column"),
        ("", "the file is empty"),
    ],
)
def test_a_file_without_a_proper_header_is_refused_and_nothing_imported(
    stack: Stack, tmp_path: Path, body: str, message: str
) -> None:
    result = run_cli(stack, "subscribers", "import", str(write_csv(tmp_path, body)))
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "one clear line"
    assert count(stack, Subscriber) == 0


def test_a_file_that_is_not_utf8_is_refused_with_what_to_do(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + "ann@example.com,Zo\u00eb,UTC\n".encode("latin-1"))
    result = run_cli(stack, "subscribers", "import", str(path))
    assert result.exit_code == 1
    assert "is not UTF-8 text" in result.stderr and "save it as UTF-8" in result.stderr


def test_running_the_same_file_twice_imports_nothing_the_second_time(
    stack: Stack, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, HEADER + "".join(f"p{n}@example.com,P{n},UTC\n" for n in range(7)))
    first = run_cli(stack, "subscribers", "import", str(path))
    second = run_cli(stack, "subscribers", "import", str(path))
    assert first.stdout.startswith("imported 7, skipped 0 existing,")
    assert second.stdout.startswith("imported 0, skipped 7 existing, skipped 0 suppressed,")
    assert (count(stack, Subscriber), count(stack, Consent), count(stack, Enrollment)) == (7, 7, 7)


def test_existing_suppressed_and_erased_addresses_are_skipped_and_left_alone(
    stack: Stack, tmp_path: Path
) -> None:
    now = stack.clock()
    key = stack.services.settings.secret_key
    with stack.session() as session:
        session.add(
            Subscriber(
                email="left@example.com", status="unsubscribed", created_at=now, unsubscribed_at=now
            )
        )
        session.add(
            Suppression(
                email_hash=email_hash(key, "bounced@example.com"), reason="bounce", created_at=now
            )
        )
        gone = Subscriber(email="gone@example.com", status="active", created_at=now)
        session.add(gone)
        session.flush()
        erase(session, gone.id, secret_key=key, now=now, actor="test")
    path = write_csv(
        tmp_path,
        HEADER
        + "left@example.com,Left,UTC\n"
        + "BOUNCED@example.com,B,UTC\n"
        + "gone@example.com,G,UTC\n"
        + "new@example.com,New,UTC\n",
    )
    result = run_cli(stack, "subscribers", "import", str(path))
    assert result.stdout.startswith("imported 1, skipped 1 existing, skipped 2 suppressed,")
    with stack.session() as session:
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        enrolled = session.scalars(
            select(Subscriber.email).join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
        ).all()
    assert statuses == {
        "left@example.com": "unsubscribed",
        "new@example.com": "active",
        None: "erased",
    }
    assert enrolled == ["new@example.com"]


def test_an_address_twice_in_one_file_is_imported_once(stack: Stack, tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER + "twin@example.com,A,UTC\nTwin@Example.COM,B,UTC\n")
    result = run_cli(stack, "subscribers", "import", str(path))
    assert result.stdout.startswith("imported 1, skipped 1 existing,")
    assert count(stack, Enrollment) == 1


@pytest.mark.parametrize("use_copy", [None, False], ids=["default-path", "generic-path"])
def test_both_write_paths_import_in_batches_and_report_progress(
    stack: Stack, tmp_path: Path, use_copy: bool | None
) -> None:
    rows = [f"b{n}@example.com,B{n},Asia/Tokyo\n" for n in range(23)]
    path = write_csv(tmp_path, HEADER + "".join(rows) + rows[0] + "bad,X,UTC\n")
    settings = stack.services.settings
    course = stack.services.course
    context = ImportContext(
        source="import:people.csv",
        consent_text=course.landing.consent,
        consent_version=course.consent_version,
        course_slug=course.slug,
        secret_key=settings.secret_key,
        now=stack.clock(),
    )
    seen: list[tuple[int, int]] = []
    bad: list[tuple[int, str]] = []

    def progress(report: ImportReport, read: int) -> None:
        seen.append((report.imported, read))

    report = import_csv(
        stack.services.database,
        path,
        context,
        batch_size=5,
        use_copy=use_copy,
        on_progress=progress,
        on_bad_row=lambda line, reason: bad.append((line, reason)),
    )
    assert (report.rows, report.imported, report.skipped_existing, report.bad_rows) == (
        25,
        23,
        1,
        1,
    )
    assert [line for line, _ in bad] == [26]
    assert len(seen) == 5, "one progress call per batch of 5 good rows"
    assert [imported for imported, _ in seen] == [5, 10, 15, 20, 23]
    assert seen[-1][1] == path.stat().st_size
    assert (count(stack, Consent), count(stack, Enrollment)) == (23, 23)


TRICKY_ADDRESSES = [
    "plain@example.com",
    "Mixed.Case@Example.COM",
    "  padded@example.com  ",
    "info@example.com",
    "o'brien+tag@example.co.uk",
    "a.b-c_d@sub.domain-x.example.org",
    "x@localhost",
    "x@example.test",
    "x@host.local",
    "x@example.invalid",
    "x@123.456",
    "x@-bad.example.com",
    "x@bad-.example.com",
    "x@ab--cd.example.com",
    "x@xn--bcher-kva.example",
    "x@b\u00fccher.example",
    "b\u00fccher@example.com",
    '"quoted"@example.com',
    "dots..twice@example.com",
    ".lead@example.com",
    "trail.@example.com",
    "no-at-sign.example.com",
    "two@@example.com",
    "a@b@example.com",
    "x@" + "a" * 64 + ".com",
    "x" * 250 + "@e.co",
    "x@example",
    "",
    "tab\t@example.com",
    "x@exa mple.com",
    "x@\uff45xample.com",
    "Name <x@example.com>",
]


@pytest.mark.parametrize("address", TRICKY_ADDRESSES)
def test_the_fast_address_check_answers_exactly_like_the_signup_form(address: str) -> None:
    assert _outcome(clean_import_email, address) == _outcome(clean_email, address)


@pytest.mark.parametrize(
    "name",
    [
        "Ann",
        "  Mary   Jane ",
        "L\u00e9a",
        "",
        "Eve\nBcc",
        "zero\u200bwidth",
        "nb\u00a0sp",
        "x" * 81,
    ],
)
def test_the_fast_name_check_answers_exactly_like_the_signup_form(name: str) -> None:
    assert _outcome(clean_import_name, name) == _outcome(clean_first_name, name)


def _outcome(check: Callable[[str], str], value: str) -> tuple[str, str]:
    try:
        return ("ok", check(value))
    except InvalidInput as exc:
        return ("refused", str(exc))
