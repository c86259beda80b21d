"""Celery tasks: thin, take ids, and call the same plain functions as the CLI and views."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError

from drip.integrations import webhooks
from drip.sending import delivery, dispatch
from drip.services import current_services, enqueue, send_queue_length
from drip.subscribers import confirmation_nudge, confirmations, housekeeping

log = logging.getLogger(__name__)

# The database or the broker away for a moment: the task goes again with backoff
# (1, 2, 4 ... s, at most 30 s apart, for about ten minutes) instead of failing.
# Both tasks claim their rows before acting, so a repeat never sends twice.
OUTAGE_RETRY: dict[str, Any] = {
    "autoretry_for": (
        OperationalError,
        InterfaceError,
        BrokerError,
        RedisConnectionError,
        RedisTimeoutError,
    ),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 25,
}


@shared_task(name="drip.tick", **OUTAGE_RETRY)
def tick() -> dict[str, int]:
    """Claim what is due and hand it to send tasks. Harmless if two run at once."""
    services = current_services()
    report = run_tick_now(services.now())
    return {"materialized": report.materialized, "dispatched": report.dispatched}


def run_tick_now(now: datetime) -> dispatch.TickReport:
    services = current_services()
    settings = services.settings
    report = dispatch.run_tick(
        services.database,
        services.course,
        now=now,
        day_seconds=settings.day_seconds,
        lease_seconds=settings.lease_seconds,
        batch_size=settings.batch_size,
        enqueue=enqueue_batch,
        enqueue_claimed=enqueue_batch,
        waiting=send_queue_length(settings),
        # Until the next tick is due: two ticks pacing at once would hold two children.
        pace_seconds=settings.tick_seconds,
    )
    if report.materialized or report.dispatched:
        log.info(
            "tick materialized=%d dispatched=%d batches=%d",
            report.materialized,
            report.dispatched,
            len(report.batches),
        )
    return report


def enqueue_batch(ids: list[int], claimed_at: datetime | None = None) -> None:
    """Hand one batch to a send task; ``claimed_at``: the tick inserted it claimed.

    With a short ``argsrepr``: by default Celery writes a repr of all the
    arguments into every message's headers and its task-sent event, which for
    1,000 ids cost about 1.5 ms a message, a second and a half of the tick
    that hands out a million (measured with `python -m bench tick --hand-out`).
    """
    args: list[Any] = [ids]
    if claimed_at is not None:
        args.append(claimed_at.isoformat())
    current_app.extensions["celery"].send_task(
        "drip.send_batch",
        args=args,
        argsrepr=f"([{len(ids)} delivery ids {ids[0]}..{ids[-1]}],)" if ids else "([],)",
    )


@shared_task(name="drip.send_batch", bind=True, **OUTAGE_RETRY)
def send_batch(
    self: Task, delivery_ids: list[int], claimed_at: str | None = None
) -> dict[str, Any]:
    services = current_services()
    report = delivery.deliver_batch(
        services.database,
        services.course,
        services.mailer,
        services.links,
        delivery_ids,
        lease_seconds=services.settings.lease_seconds,
        clock=services.clock,
        journal=services.journal,
        claimed_at=None if claimed_at is None else datetime.fromisoformat(claimed_at),
        # A redelivered message and a retry keep the task id: every run of this hand-out.
        hand_out=str(self.request.id or ""),
    )
    log.info(
        "batch claimed=%d sent=%d skipped=%d failed=%d retrying=%d",
        report.claimed,
        report.sent,
        report.skipped,
        report.failed,
        report.retrying,
    )
    return asdict(report)


@shared_task(
    name="drip.send_confirmation",
    autoretry_for=(confirmations.ConfirmationNotSent,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
)
def send_confirmation(subscriber_id: int, consent_id: int) -> bool:
    services = current_services()
    return confirmations.send_confirmation(services, subscriber_id, consent_id)


@shared_task(name="drip.send_confirmations")
def send_confirmations() -> int:
    """Every confirmation email due now, in batches. Harmless if two run at once."""
    services = current_services()
    confirmation_nudge.forget(services.settings)  # before looking: see confirmation_nudge
    return confirmations.send_due(services)


@shared_task(name="drip.housekeeping")
def run_housekeeping() -> dict[str, int]:
    services = current_services()
    return housekeeping.run(services)


@shared_task(name="drip.webhooks.sweep")
def webhooks_sweep() -> dict[str, int]:
    """Fan new events out to webhook endpoints and hand out the sends that are due."""
    return run_webhooks_sweep_now()


def run_webhooks_sweep_now() -> dict[str, int]:
    services = current_services()
    return webhooks.sweep(services, lambda message_id: enqueue("drip.webhooks.deliver", message_id))


@shared_task(name="drip.webhooks.deliver")
def webhooks_deliver(message_id: int) -> str:
    """One attempt at one webhook message; a failure is rescheduled in the database."""
    return webhooks.deliver(current_services(), message_id)
