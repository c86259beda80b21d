"""Sales come back from the affiliate network and count for the lesson that sold, on both
databases: ClickBank's encrypted Instant Notification and the generic signed postback."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from drip.data.models import Click
from tests.conftest import Stack, wait_until
from tests.mailbox import html_part, messages, text_part
from tests.revenue_fixtures import (
    click_for,
    clickbank_envelope,
    conversions,
    first_lesson_to,
    generic_query,
    notification,
    post_clickbank,
)
from tests.revenue_fixtures import stack as stack

PERSON = "person0@example.com"
FIXTURES = Path(__file__).parent / "course_fixtures"


def test_the_call_to_action_hands_the_network_an_opaque_click_id(stack: Stack) -> None:
    first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    assert tid.isalnum() and len(tid) <= 24  # ClickBank's tid: at most 24 letters and digits
    assert click_for(stack, PERSON) != tid  # a fresh, random id per click, not per person
    with stack.session() as session:
        click = session.scalars(select(Click).order_by(Click.id)).first()
    assert click is not None and (click.ref, click.lesson) == (tid, 1)


def test_a_clickbank_sale_is_attributed_to_the_lesson_that_sold(stack: Stack) -> None:
    (subscriber_id,) = first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    answer = post_clickbank(stack, clickbank_envelope(notification("SALE", "RCPT0001", tid)))
    assert (answer.status_code, answer.json) == (200, {"status": "stored"})
    (sale,) = conversions(stack)
    assert (sale.kind, sale.lesson, sale.subscriber_id) == ("SALE", 1, subscriber_id)
    assert (sale.amount_cents, sale.currency) == (2750, "USD")
    assert sale.signup_week is not None and sale.signup_week.isoformat() == "2026-03-02"


def test_a_replayed_notification_counts_once(stack: Stack) -> None:
    first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    for _ in range(3):  # ClickBank retries until it sees a 200; each retry is a new envelope
        answer = post_clickbank(stack, clickbank_envelope(notification("SALE", "RCPT0002", tid)))
        assert answer.status_code == 200
    assert answer.json == {"status": "replayed"}
    assert len(conversions(stack)) == 1


def test_a_notification_under_the_wrong_key_is_refused_and_stores_nothing(stack: Stack) -> None:
    first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    body = clickbank_envelope(notification("SALE", "RCPT0003", tid), secret_key="NOTTHEKEY0000000")
    answer = post_clickbank(stack, body)
    assert answer.status_code == 401 and "secret key" in answer.json["error"]
    assert conversions(stack) == []


def test_malformed_notifications_get_a_4xx_never_a_5xx(stack: Stack) -> None:
    good = json.loads(clickbank_envelope(notification("SALE", "RCPT0004", None)))
    bodies = [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"notification": 5, "iv": "AAAA"}',
        json.dumps({"notification": good["notification"]}).encode(),
        json.dumps({**good, "iv": "c2hvcnQ="}).encode(),  # an IV of 5 bytes
        json.dumps({**good, "notification": good["notification"][:-8]}).encode(),
        b"\xff\xfe",
        clickbank_envelope({**notification("SALE", "RCPT0005", None), "currency": "dollars"}),
        clickbank_envelope({**notification("SALE", "RCPT0006", None), "totalAccountAmount": "x"}),
        clickbank_envelope({**notification("SALE", "", None)}),
        clickbank_envelope({**notification("BOGUS", "RCPT0007", None)}),
        clickbank_envelope({**notification("SALE", "RCPT0008", None), "transactionTime": "now"}),
        clickbank_envelope(["not", "an", "object"]),  # type: ignore[arg-type]
    ]
    for body in bodies:
        answer = post_clickbank(stack, body)
        assert 400 <= answer.status_code < 500, (body, answer.status_code)
        assert "error" in answer.json
    assert conversions(stack) == []


def test_a_sale_from_no_known_click_is_kept_unattributed_but_a_stray_refund_is_not(
    stack: Stack,
) -> None:
    answer = post_clickbank(stack, clickbank_envelope(notification("SALE", "RCPT0009", "zz9")))
    assert answer.status_code == 200
    (sale,) = conversions(stack)
    assert (sale.lesson, sale.subscriber_id, sale.click_id) == (None, None, None)
    stray = post_clickbank(stack, clickbank_envelope(notification("RFND", "OTHER001", None)))
    assert stray.status_code == 404
    assert len(conversions(stack)) == 1


def test_clickbank_test_notifications_are_answered_and_not_stored(stack: Stack) -> None:
    answer = post_clickbank(stack, clickbank_envelope(notification("TEST", "TEST0001", None)))
    assert (answer.status_code, answer.json) == (200, {"status": "test"})
    assert conversions(stack) == []


def test_a_refund_reverses_the_sale_under_its_receipt(stack: Stack) -> None:
    first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    post_clickbank(stack, clickbank_envelope(notification("SALE", "RCPT0010", tid)))
    # A refund notification may carry no tracking code: the receipt ties it to the sale.
    answer = post_clickbank(stack, clickbank_envelope(notification("RFND", "RCPT0010", None)))
    assert answer.status_code == 200
    sale, refund = conversions(stack)
    assert (refund.kind, refund.amount_cents, refund.lesson) == ("RFND", -2750, 1)
    assert sale.amount_cents + refund.amount_cents == 0


def test_no_personal_data_from_the_network_is_stored(stack: Stack) -> None:
    first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    post_clickbank(stack, clickbank_envelope(notification("SALE", "RCPT0011", tid)))
    (sale,) = conversions(stack)
    stored = " ".join(str(value) for value in vars(sale).values())
    for personal in ("Pat Buyer", "pat.buyer@example.com", "62701"):
        assert personal not in stored


def lesson_mail(stack: Stack, number: int) -> tuple[str, str]:
    mail = wait_until(lambda: messages(stack.outbox, to=PERSON)[number - 1 :])[0]
    return html_part(mail), text_part(mail)


def next_lesson(stack: Stack, number: int) -> tuple[str, str]:
    stack.clock.set(stack.clock().replace(hour=8) + timedelta(days=1))
    stack.tick()
    return lesson_mail(stack, number)


def test_a_buyer_is_not_pitched_again_and_a_refunded_buyer_is(stack: Stack) -> None:
    course = stack.services.course
    first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    post_clickbank(stack, clickbank_envelope(notification("SALE", "RCPT0012", tid)))
    html, text = next_lesson(stack, 2)
    for part in (html, text):
        assert course.buyers.text in part
        assert course.cta.text not in part and "/r/" not in part
        assert "Unsubscribe" in part or "unsubscribe" in part  # the course goes on, lawfully
    post_clickbank(stack, clickbank_envelope(notification("RFND", "RCPT0012", tid)))
    html, text = next_lesson(stack, 3)
    for part in (html, text):
        assert course.cta.text in part and course.cta.disclosure in part
        assert course.buyers.text not in part


def test_a_generic_postback_is_signed_fresh_and_counted_once(stack: Stack) -> None:
    (subscriber_id,) = first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    ts = str(int(stack.clock().timestamp()))
    params = {"click": tid, "amount": "19.90", "currency": "eur", "txid": "TX-1", "ts": ts}
    for method in (stack.client.get, stack.client.post):
        answer = method("/postbacks/generic?" + generic_query(params))
        assert answer.status_code == 200
    (sale,) = conversions(stack)
    assert (sale.source, sale.kind, sale.amount_cents, sale.currency) == (
        "generic", "SALE", 1990, "EUR"
    )  # fmt: skip
    assert (sale.lesson, sale.subscriber_id) == (1, subscriber_id)
    refund = generic_query({**params, "type": "refund"})
    assert stack.client.post("/postbacks/generic", data=dict(
        pair.split("=", 1) for pair in refund.split("&"))).status_code == 200  # fmt: skip
    assert [c.amount_cents for c in conversions(stack)] == [1990, -1990]


def test_a_generic_postback_with_a_bad_signature_or_an_old_timestamp_is_refused(
    stack: Stack,
) -> None:
    first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    now = int(stack.clock().timestamp())
    params = {"click": tid, "amount": "19.90", "currency": "EUR", "txid": "TX-2", "ts": str(now)}
    signed = generic_query(params)
    refused = [
        generic_query(params, secret="another-secret-0123456789"),
        signed.replace("amount=19.90", "amount=99.90"),  # changed after signing
        signed.split("&sig=")[0],  # no signature at all
        generic_query({**params, "ts": str(now - 301)}),  # stale
        generic_query({**params, "ts": str(now + 301)}),  # from the future
        signed + "&amount=1",  # a repeated parameter
        generic_query({**params, "ts": "yesterday"}),
        generic_query({**params, "amount": "-5"}),
        generic_query({**params, "type": "gift"}),
    ]
    for query in refused:
        answer = stack.client.get("/postbacks/generic?" + query)
        assert answer.status_code in (400, 401, 422), (query, answer.status_code)
    assert conversions(stack) == []
    assert stack.client.get("/postbacks/generic?" + signed).status_code == 200


def test_erasure_keeps_only_anonymous_revenue(stack: Stack) -> None:
    from drip.subscribers import privacy

    (subscriber_id,) = first_lesson_to(stack)
    tid = click_for(stack, PERSON)
    post_clickbank(stack, clickbank_envelope(notification("SALE", "RCPT0013", tid)))
    with stack.session() as session:
        assert privacy.export(session, subscriber_id)["purchases"][0]["amount"] == 27.5
        privacy.erase(session, subscriber_id, secret_key="k", now=stack.clock(), actor="test")
    (sale,) = conversions(stack)
    assert (sale.subscriber_id, sale.click_id) == (None, None)
    assert (sale.lesson, sale.amount_cents, str(sale.signup_week)) == (1, 2750, "2026-03-02")
    with stack.session() as session:
        assert session.scalars(select(Click.ref)).all() == [None]
    # The refund still finds its sale by receipt, and still subtracts.
    post_clickbank(stack, clickbank_envelope(notification("RFND", "RCPT0013", tid)))
    assert [c.amount_cents for c in conversions(stack)] == [2750, -2750]


def test_postbacks_answer_404_when_not_configured(stack: Stack) -> None:
    from dataclasses import replace

    settings = stack.services.settings
    stack.services.settings = replace(settings, clickbank_secret_key=None, postback_secret=None)
    try:
        body = clickbank_envelope(notification("SALE", "RCPT0014", None))
        assert post_clickbank(stack, body).status_code == 404
        assert stack.client.get("/postbacks/generic?click=x").status_code == 404
    finally:
        stack.services.settings = settings
    assert conversions(stack) == []


def test_the_buyers_note_is_optional_in_the_course_file(tmp_path: Path) -> None:
    from drip.course.loader import load_course
    from drip.course.model import DEFAULT_BUYERS_TEXT, CourseError

    course_dir = tmp_path / "course"
    shutil.copytree(FIXTURES / "three-day", course_dir)
    assert load_course(course_dir).buyers.text == DEFAULT_BUYERS_TEXT
    toml = course_dir / "course.toml"
    toml.write_text(toml.read_text() + '\n[buyers]\ntext = "Thanks for buying!"\n')
    assert load_course(course_dir).buyers.text == "Thanks for buying!"
    toml.write_text(toml.read_text() + 'txt = "typo"\n')
    with pytest.raises(CourseError, match=re.escape('unknown key "buyers.txt"')):
        load_course(course_dir)
