"""Sales reported by affiliate networks: recorded once, attributed to the lesson that sold.

A network reports a transaction (ClickBank's Instant Notification, or a
generic signed postback) with the tracking codes our redirect handed it. The
click ref among them names the click, hence the subscriber, the lesson and the
signup week. Reversals (refunds, chargebacks) are stored as negative amounts
under the sale's receipt, so they subtract and the buyer is pitched again.
Nothing personal from the network is kept.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from drip.clock import week_of
from drip.data.db import upsert_into
from drip.data.models import REVERSALS, SALES, Click, Conversion, ConversionType, Subscriber
from drip.subscribers.clicks import REF_LENGTH

_REF = re.compile(rf"[a-z0-9]{{{REF_LENGTH}}}")


class InvalidReport(Exception):
    """A report we cannot use; ``status`` is the HTTP answer to give (always 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def cents(value: Any) -> int:
    """An amount (number or numeric string) in hundredths, rounded half even like a bank."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidReport(422, f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidReport(422, f"not an amount: {value!r}") from None
    if not amount.is_finite() or abs(amount) >= 10**8:
        raise InvalidReport(422, f"not a usable amount: {value!r}")
    return int((amount * 100).to_integral_value())


def currency(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise InvalidReport(422, f"currency must be a three-letter code, not {value!r}")
    return value.upper()


@dataclass(frozen=True)
class Report:
    """One transaction as a network reports it; ``amount_cents`` as reported (sign ignored)."""

    source: str  # clickbank, generic
    external_id: str  # ClickBank's receipt, a generic network's txid
    kind: str  # a ConversionType value
    amount_cents: int
    currency: str
    occurred_at: datetime
    tracking_codes: tuple[str, ...] = ()


class Outcome(enum.StrEnum):
    STORED = "stored"
    REPLAYED = "replayed"  # already stored: a network's retry counts once
    UNKNOWN = "unknown"  # names no click and no earlier sale: nothing stored
    TEST = "test"  # the network's test notification: answered, never stored


@dataclass(frozen=True)
class _Attribution:
    click_id: int | None = None
    subscriber_id: int | None = None
    lesson: int | None = None
    signup_week: date | None = None


def record(session: Session, report: Report, *, now: datetime) -> Outcome:
    """Store a reported transaction once, attributed to its click (or to its sale)."""
    if report.kind == ConversionType.TEST.value:
        return Outcome.TEST
    attribution = _from_click(session, report.tracking_codes) or _from_sale(session, report)
    if attribution is None:
        if report.kind not in SALES:
            return Outcome.UNKNOWN
        attribution = _Attribution()  # a real sale, just not from our links: still revenue
    inserted = session.scalar(
        upsert_into(session, Conversion)
        .values(
            source=report.source,
            external_id=report.external_id,
            kind=report.kind,
            amount_cents=signed_amount(report.kind, report.amount_cents),
            currency=report.currency,
            occurred_at=report.occurred_at,
            received_at=now,
            click_id=attribution.click_id,
            subscriber_id=attribution.subscriber_id,
            lesson=attribution.lesson,
            signup_week=attribution.signup_week,
        )
        .on_conflict_do_nothing(index_elements=["source", "external_id", "kind"])
        .returning(Conversion.id)
    )
    return Outcome.STORED if inserted is not None else Outcome.REPLAYED


def signed_amount(kind: str, amount_cents: int) -> int:
    """Sales add, reversals subtract, the rest (rebill cancellations) carry no money."""
    if kind in SALES:
        return abs(amount_cents)
    if kind in REVERSALS:
        return -abs(amount_cents)
    return 0


def _from_click(session: Session, codes: Iterable[str]) -> _Attribution | None:
    # Tracking codes may hold other things too; only a ref of ours can name a click.
    refs = {code.strip().lower() for code in codes if _REF.fullmatch(code.strip().lower())}
    if not refs:
        return None
    row = session.execute(
        select(Click.id, Click.subscriber_id, Click.lesson, Subscriber.created_at)
        .outerjoin(Subscriber, Subscriber.id == Click.subscriber_id)
        .where(Click.ref.in_(sorted(refs)))
        .order_by(Click.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    signup_week = week_of(row.created_at) if row.created_at is not None else None
    return _Attribution(row.id, row.subscriber_id, row.lesson, signup_week)


def _from_sale(session: Session, report: Report) -> _Attribution | None:
    """A reversal (or rebill change) belongs where its sale was attributed."""
    sale = session.scalars(
        select(Conversion)
        .where(
            Conversion.source == report.source,
            Conversion.external_id == report.external_id,
            Conversion.kind.in_(SALES),
        )
        .order_by(Conversion.id)
        .limit(1)
    ).first()
    if sale is None:
        return None
    return _Attribution(sale.click_id, sale.subscriber_id, sale.lesson, sale.signup_week)
