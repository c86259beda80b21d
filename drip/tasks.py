"""Celery tasks: thin, take ids, and call the same plain functions as the CLI and views."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from celery import shared_task
from flask import current_app

from drip import confirmations, dispatch, housekeeping, sending
from drip.services import current_services

log = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any) -> None:
    """Queue a task on this Flask app's own Celery app (tests run more than one app)."""
    current_app.extensions["celery"].send_task(task_name, args=list(args))


def kick_tick() -> None:
    """Run a tick now rather than at the next beat (lesson 1 after confirming, a restart,
    an operator's retry). If the broker is down the periodic tick still finds the work:
    it is due in the database."""
    from kombu.exceptions import OperationalError

    with contextlib.suppress(OperationalError):
        enqueue("drip.tick")


@shared_task(name="drip.tick")
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
        enqueue=lambda ids: enqueue("drip.send_batch", ids),
    )
    if report.materialized or report.dispatched:
        log.info(
            "tick materialized=%d dispatched=%d batches=%d",
            report.materialized,
            report.dispatched,
            len(report.batches),
        )
    return report


@shared_task(name="drip.send_batch")
def send_batch(delivery_ids: list[int]) -> dict[str, Any]:
    services = current_services()
    report = sending.send_batch(
        services.database,
        services.course,
        services.mailer,
        services.links,
        delivery_ids,
        lease_seconds=services.settings.lease_seconds,
        clock=services.clock,
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


@shared_task(name="drip.housekeeping")
def run_housekeeping() -> dict[str, int]:
    services = current_services()
    return housekeeping.run(services)
