"""The tracked call to action: recorded, scanners kept apart, and only ever to the affiliate URL."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select

from drip.data.models import Click
from tests.conftest import Stack, wait_until
from tests.mailbox import link, messages
from tests.test_concurrency import confirmed_subscribers

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"


def cta_path(stack: Stack) -> str:
    confirmed_subscribers(stack, 1)
    stack.tick()
    lesson = wait_until(lambda: messages(stack.outbox, to="person0@example.com"))[-1]
    return link(lesson, "/r/")


def without_click_id(location: str) -> str:
    """The affiliate URL the redirect went to, without the click id it appends."""
    return urlunsplit(urlsplit(location)._replace(query=""))


def clicks(stack: Stack) -> list[Click]:
    with stack.session() as session:
        return list(session.scalars(select(Click).order_by(Click.id)))


def test_a_human_click_is_recorded_and_redirected_to_the_affiliate_url(stack: Stack) -> None:
    path = cta_path(stack)
    stack.clock.advance(minutes=5)
    answer = stack.client.get(path, headers={"User-Agent": BROWSER})
    assert answer.status_code == 302
    assert without_click_id(answer.headers["Location"]) == stack.services.course.cta.url
    (click,) = clicks(stack)
    assert (click.lesson, click.scanner) == (1, False)
    assert answer.headers["Location"].endswith(f"?tid={click.ref}")


def test_scanner_clicks_are_kept_apart(stack: Stack) -> None:
    path = cta_path(stack)
    stack.clock.advance(minutes=5)
    stack.client.head(path, headers={"User-Agent": BROWSER})
    stack.client.get(path, headers={"User-Agent": "Mimecast URL Protect"})
    stack.client.get(path, headers={"User-Agent": ""})  # no user agent at all
    assert [c.scanner for c in clicks(stack)] == [True, True, True]


def test_a_click_seconds_after_delivery_counts_as_a_scanner(stack: Stack) -> None:
    path = cta_path(stack)
    # The fake clock still stands at the send time: the click comes "within seconds".
    with stack.session() as session:
        from drip.data.models import Delivery

        delivery = session.scalars(select(Delivery)).one()
        delivery.sent_at = stack.clock() - timedelta(seconds=2)
    stack.client.get(path, headers={"User-Agent": BROWSER})
    assert [c.scanner for c in clicks(stack)] == [True]


def test_the_redirect_never_follows_a_url_from_the_request(stack: Stack) -> None:
    path = cta_path(stack)
    for query in ["?url=https://evil.example", "?next=//evil.example", "?to=javascript:alert(1)"]:
        answer = stack.client.get(path + query, headers={"User-Agent": BROWSER})
        assert without_click_id(answer.headers["Location"]) == stack.services.course.cta.url


def test_forged_tokens_reach_the_offer_but_record_nothing(stack: Stack) -> None:
    cta_path(stack)
    forged = stack.services.tokens.make("drip.unsubscribe", 1)  # right key, wrong purpose
    for path in ["/r/forged", f"/r/{forged}", "/r/" + "A" * 300]:
        answer = stack.client.get(path, headers={"User-Agent": BROWSER})
        assert answer.status_code == 302
        assert answer.headers["Location"] == stack.services.course.cta.url
    unknown = stack.services.tokens.make("drip.click", 999999)
    assert stack.client.get(f"/r/{unknown}").status_code == 302
    assert clicks(stack) == []


def test_the_click_id_replaces_one_already_in_the_affiliate_url() -> None:
    from drip.subscribers.clicks import with_click_ref

    url = "https://hop.example/?vendor=x&tid=fromfile&a=b%20c"
    assert (
        with_click_ref(url, "tid", "abc123") == "https://hop.example/?vendor=x&a=b%20c&tid=abc123"
    )
