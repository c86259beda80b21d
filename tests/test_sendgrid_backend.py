"""The SendGrid backend with the real `sendgrid` client against the sink: the request it
builds, how each answer maps to a MailError, the shared send rate, and a big lesson day
going out in a few requests through the tick and the real worker."""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from drip_devtools.sendgrid_sink import Sink
from sqlalchemy import insert, select

from drip.config import ConfigError, Settings, load_settings
from drip.data.models import Delivery, Enrollment, Subscriber
from drip.mail.base import (
    Batch,
    MailError,
    OutcomeUnknown,
    PermanentBatchError,
    RateLimited,
    Recipient,
    SendingDisabled,
    TransientError,
)
from drip.mail.sendgrid import CUSTOM_ARG_KEY, MessageRefused, SendGridMailer, mail_body
from drip.sending.rate import RateLimitedMailer, SendRate
from drip.services import build_mailer
from tests.conftest import (
    SENDGRID_API_KEY,
    Stack,
    free_port,
    handed_out_settled,
    sendgrid_stack,
    wait_until,
)


@pytest.fixture()
def fresh_sink(sink: Sink) -> Sink:
    sink.clear_faults()
    sink.reset()
    sink.recording = True
    return sink


def mailer_for(sink: Sink, timeout: float = 5.0) -> SendGridMailer:
    return SendGridMailer(api_key=SENDGRID_API_KEY, host=sink.url, timeout=timeout)


def lesson_batch(count: int = 3, **fields: str) -> Batch:
    recipients = tuple(
        Recipient(
            key=str(100 + i),
            email=f"reader{i}@example.com",
            name=f"Reader {i}",
            substitutions={
                "%%drip_name_text%%": f"Reader {i}",
                "%%drip_cta_url%%": f"https://x/r/{i}",
            },
            headers={
                "List-Unsubscribe": f"<https://drip.test/u/{i}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        for i in range(count)
    )
    values = {
        "from_email": "course@example.com",
        "from_name": "The Course",
        "subject": "Day 1: hello",
        "html": "<p>Hello %%drip_name_text%%, <a href='%%drip_cta_url%%'>go</a></p>",
        "text": "Hello %%drip_name_text%%, go: %%drip_cta_url%%",
        "reply_to": "reply@example.com",
        "category": "lesson-01",
    }
    values.update(fields)
    return Batch(recipients=recipients, **values)  # type: ignore[arg-type]


def add_due_subscribers(stack: Stack, count: int, prefix: str = "person") -> list[str]:
    """``count`` confirmed subscribers whose lesson 1 is due now, inserted in bulk."""
    now = stack.clock()
    emails = [f"{prefix}{n}@example.com" for n in range(count)]
    with stack.session() as session:
        ids = session.scalars(
            insert(Subscriber).returning(Subscriber.id),
            [
                {
                    "email": email,
                    "first_name": f"P{n}",
                    "timezone": "UTC",
                    "status": "active",
                    "created_at": now,
                    "confirmed_at": now,
                }
                for n, email in enumerate(emails)
            ],
        ).all()
        session.execute(
            insert(Enrollment),
            [
                {
                    "subscriber_id": subscriber_id,
                    "course_slug": stack.services.course.slug,
                    "status": "active",
                    "next_lesson": 1,
                    "next_due_at": now,
                    "started_at": now,
                }
                for subscriber_id in ids
            ],
        )
    return emails


def test_a_batch_is_one_request_with_a_personalization_per_recipient(fresh_sink: Sink) -> None:
    batch = lesson_batch(3)
    results = mailer_for(fresh_sink).send(batch)

    assert fresh_sink.stats["requests"] == 1
    records = fresh_sink.messages
    assert [r["to"] for r in records] == [f"reader{i}@example.com" for i in range(3)]
    assert [r.key for r in results] == ["100", "101", "102"]
    assert all(r.accepted for r in results)
    assert {r.message_id for r in results} == {records[0]["message_id"]}
    for i, record in enumerate(records):
        assert record["text"] == f"Hello Reader {i}, go: https://x/r/{i}"
        assert f"Hello Reader {i}" in record["html"]
        assert record["headers"] == {
            "List-Unsubscribe": f"<https://drip.test/u/{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert record["custom_args"] == {CUSTOM_ARG_KEY: str(100 + i)}
        assert record["categories"] == ["lesson-01"]
        assert record["reply_to"] == {"email": "reply@example.com"}
        assert record["from"] == {"email": "course@example.com", "name": "The Course"}


def test_the_body_goes_as_json_and_the_clients_debug_log_gets_its_size_not_its_text(
    fresh_sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    batch = lesson_batch(200, subject="Día 1: ¡hola!")
    with caplog.at_level(logging.DEBUG, logger="python_http_client"):
        mailer_for(fresh_sink).send(batch)
    records = fresh_sink.messages
    assert len(records) == 200 and records[0]["subject"] == "Día 1: ¡hola!"
    payload = [r.getMessage() for r in caplog.records if r.getMessage().startswith("PAYLOAD")]
    assert len(payload) == 1 and len(payload[0]) < 100, payload
    assert "bytes of JSON" in payload[0]


def test_the_request_turns_off_sendgrids_own_unsubscribe_and_click_tracking() -> None:
    body = mail_body(lesson_batch(2))
    assert body["tracking_settings"]["subscription_tracking"] == {"enable": False}
    assert body["tracking_settings"]["click_tracking"]["enable"] is False
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["personalizations"][0]["to"] == [
        {"email": "reader0@example.com", "name": "Reader 0"}
    ]
    no_reply = mail_body(lesson_batch(1, reply_to="", category=""))
    assert "reply_to" not in no_reply and "categories" not in no_reply


# --- Answers and failures -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, SendingDisabled),
        (403, SendingDisabled),
        (429, RateLimited),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
    ],
)
def test_each_refusal_becomes_the_error_that_says_what_to_do(
    fresh_sink: Sink, status: int, error: type[MailError]
) -> None:
    fresh_sink.set_faults(rules=[{"status": status, "next": 1, "reset_in": 3}])
    with pytest.raises(error) as raised:
        mailer_for(fresh_sink).send(lesson_batch())
    assert str(status) in str(raised.value)
    if status == 429:
        reset_at = raised.value.reset_at  # type: ignore[attr-defined]
        assert reset_at is not None and time.time() < reset_at <= time.time() + 4
    # The next request is not refused: the rule fired once.
    assert len(mailer_for(fresh_sink).send(lesson_batch())) == 3


def test_a_wrong_key_or_unverified_sender_disables_sending(fresh_sink: Sink) -> None:
    wrong = SendGridMailer(api_key="SG.revoked.key", host=fresh_sink.url, timeout=5)
    with pytest.raises(SendingDisabled, match="401"):
        wrong.send(lesson_batch())
    fresh_sink.set_faults(unverified_senders=["course@example.com"])
    with pytest.raises(SendingDisabled, match="verified Sender Identity"):
        mailer_for(fresh_sink).send(lesson_batch())


def test_a_bad_address_is_refused_naming_it_so_the_batch_can_be_split(fresh_sink: Sink) -> None:
    fresh_sink.set_faults(bad_recipients=["reader1@example.com"])
    with pytest.raises(PermanentBatchError) as raised:
        mailer_for(fresh_sink).send(lesson_batch(3))
    assert not isinstance(raised.value, MessageRefused)
    assert "personalizations.1.to.0.email" in str(raised.value)


def test_a_bad_sender_refuses_the_whole_message_without_splitting(fresh_sink: Sink) -> None:
    with pytest.raises(MessageRefused, match=r"\[from\.email\]"):
        mailer_for(fresh_sink).send(lesson_batch(3, from_email="not-an-address"))


def test_a_message_over_30_mb_is_refused_as_a_whole(fresh_sink: Sink) -> None:
    huge = "x" * (31 * 1024 * 1024)
    with pytest.raises(MessageRefused, match=r"413.*30 MB"):
        mailer_for(fresh_sink).send(lesson_batch(2, html=huge))
    assert fresh_sink.stats["statuses"] == {"413": 1}


def test_content_shaped_like_an_api_key_is_refused_before_any_request(fresh_sink: Sink) -> None:
    with pytest.raises(MessageRefused, match="API key"):
        mailer_for(fresh_sink).send(lesson_batch(text="SG.abcdef.ghijkl is my key"))
    assert fresh_sink.stats["requests"] == 0


def test_no_answer_within_the_timeout_is_an_unknown_outcome(fresh_sink: Sink) -> None:
    fresh_sink.set_faults(rules=[{"delay": 2.0, "next": 1}])
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown, match="may have been sent"):
        mailer_for(fresh_sink, timeout=0.5).send(lesson_batch())
    assert time.monotonic() - started < 1.5, "the explicit timeout must cut the wait short"


def test_a_dropped_connection_is_an_unknown_outcome(fresh_sink: Sink) -> None:
    fresh_sink.set_faults(rules=[{"drop": True, "next": 1}])
    with pytest.raises(OutcomeUnknown):
        mailer_for(fresh_sink).send(lesson_batch())


def test_a_refused_connection_is_safe_to_retry() -> None:
    nobody = SendGridMailer(
        api_key=SENDGRID_API_KEY, host=f"http://127.0.0.1:{free_port()}", timeout=2
    )
    with pytest.raises(TransientError, match="unreachable"):
        nobody.send(lesson_batch())


# --- The shared send rate ---------------------------------------------------------------


@pytest.fixture()
def rate_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{redis_url}/13")
    yield client
    client.close()


def limited(sink: Sink, client: redis.Redis, rate: float, key: str) -> RateLimitedMailer:
    return RateLimitedMailer(mailer_for(sink), SendRate(client, rate, key=key))


def test_three_batches_at_the_rate_take_the_time_the_rate_allows(
    fresh_sink: Sink, rate_redis: redis.Redis
) -> None:
    rate, size = 20.0, 20
    mailer = limited(fresh_sink, rate_redis, rate, f"drip:test-rate:{secrets.token_hex(4)}")
    started = time.monotonic()
    for _ in range(3):
        mailer.send(lesson_batch(size))
    elapsed = time.monotonic() - started
    # A full bucket lets the first second's worth go at once; the rest accrue at the rate.
    expected = (3 * size - rate) / rate
    assert expected - 0.05 <= elapsed < expected + 1.5, elapsed
    assert fresh_sink.stats["messages"] == 3 * size


def test_a_batch_larger_than_the_rate_waits_for_its_tokens_across_seconds(
    fresh_sink: Sink, rate_redis: redis.Redis
) -> None:
    mailer = limited(fresh_sink, rate_redis, 10.0, f"drip:test-rate:{secrets.token_hex(4)}")
    started = time.monotonic()
    mailer.send(lesson_batch(25))
    assert 1.45 <= time.monotonic() - started < 3.0  # 25 tokens, 10 in the bucket, 10 a second


def test_two_workers_sharing_the_rate_respect_it_together(
    fresh_sink: Sink, rate_redis: redis.Redis, redis_url: str
) -> None:
    rate, size, batches = 20.0, 10, 3
    key = f"drip:test-rate:{secrets.token_hex(4)}"
    clients = [redis.Redis.from_url(f"{redis_url}/13") for _ in range(2)]  # as two processes
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(client: redis.Redis) -> None:
        mailer = limited(fresh_sink, client, rate, key)
        barrier.wait()
        try:
            for _ in range(batches):
                mailer.send(lesson_batch(size))
        except BaseException as exc:  # reported in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    for client in clients:
        client.close()
    assert not errors, errors
    total = 2 * batches * size
    expected = (total - rate) / rate
    assert expected - 0.05 <= elapsed < expected + 1.5, elapsed
    assert fresh_sink.stats["messages"] == total


def test_a_long_queue_ahead_hands_the_batch_back_for_later(
    fresh_sink: Sink, rate_redis: redis.Redis
) -> None:
    key = f"drip:test-rate:{secrets.token_hex(4)}"
    rate = SendRate(rate_redis, 10.0, key=key, max_wait=1.0)
    assert rate.reserve(40) == pytest.approx(3.0, abs=0.1)  # others queued 3 s of sending
    mailer = RateLimitedMailer(mailer_for(fresh_sink), rate)
    with pytest.raises(RateLimited, match="DRIP_SEND_RATE") as raised:
        mailer.send(lesson_batch(1))
    reset_at = raised.value.reset_at
    assert reset_at is not None and time.time() + 2 < reset_at < time.time() + 4
    assert fresh_sink.stats["requests"] == 0


def test_the_rate_and_the_timeout_come_from_the_environment(tmp_path: Path) -> None:
    base = {"DRIP_VAR_DIR": str(tmp_path)}
    assert load_settings(base).batch_size == 1000
    assert load_settings(base).sendgrid_timeout == 10.0
    settings = load_settings(base | {"DRIP_SEND_RATE": "5", "DRIP_SENDGRID_TIMEOUT": "2.5"})
    assert (settings.send_rate, settings.sendgrid_timeout) == (5.0, 2.5)
    assert settings.batch_size == 50, "a batch holds at most half a send lease of sending"
    longer = load_settings(base | {"DRIP_SEND_RATE": "5", "DRIP_SEND_LEASE_SECONDS": "120"})
    assert (longer.lease_seconds, longer.batch_size) == (120, 300)
    assert load_settings(base).lease_seconds == 20
    with pytest.raises(ConfigError, match="DRIP_SEND_LEASE_SECONDS"):
        load_settings(base | {"DRIP_SEND_LEASE_SECONDS": "2"})
    with pytest.raises(ConfigError, match="DRIP_SENDGRID_TIMEOUT"):
        load_settings(base | {"DRIP_SENDGRID_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="DRIP_SEND_RATE"):
        load_settings(base | {"DRIP_SEND_RATE": "-1"})


def test_a_send_rate_puts_every_backend_behind_the_shared_limit(
    redis_url: str, tmp_path: Path
) -> None:
    plain = build_mailer(Settings(outbox_dir=tmp_path))
    assert not isinstance(plain, RateLimitedMailer)
    limited_mailer = build_mailer(
        Settings(outbox_dir=tmp_path, send_rate=5.0, redis_url=f"{redis_url}/13")
    )
    assert isinstance(limited_mailer, RateLimitedMailer) and limited_mailer.name == "outbox"
    assert limited_mailer.rate.rate == 5.0


# --- A big lesson day, through the tick and the real worker -------------------------------


def test_2500_subscribers_due_for_the_same_lesson_go_out_in_3_requests(
    stack_factory: Callable[..., Stack], sink: Sink
) -> None:
    stack = sendgrid_stack(stack_factory, sink)
    add_due_subscribers(stack, 2500)
    sink.recording = False  # counting is enough; 2,500 kept lessons would only cost memory

    report = stack.tick()

    assert report.dispatched == 2500
    assert [len(batch) for batch in report.batches] == [1000, 1000, 500]
    wait_until(lambda: handed_out_settled(stack), timeout=30)
    assert sink.stats["requests"] == 3
    assert sink.stats["messages"] == 2500
    with stack.session() as session:
        rows = session.execute(select(Delivery.status, Delivery.message_id)).all()
    assert {status for status, _ in rows} == {"sent"}
    assert len({message_id for _, message_id in rows}) == math.ceil(2500 / 1000)
