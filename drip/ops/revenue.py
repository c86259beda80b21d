"""Money per lesson and per signup week: which lesson and which cohort earned what.

Amounts are hundredths of a currency unit, net of refunds and chargebacks,
kept per currency (a network may pay in more than one). Clicks are human
clicks on the call to action; scanner clicks are left out, as on the course page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from drip.clock import week_of
from drip.course.model import Course
from drip.data.models import REVERSALS, SALES, Click, Conversion, Delivery, Subscriber


@dataclass
class Row:
    """Revenue figures for one lesson or one signup week."""

    label: str
    clicks: int = 0
    conversions: int = 0  # sales (and rebills)
    reversals: int = 0  # refunds, chargebacks, returned eChecks
    revenue: dict[str, int] = field(default_factory=dict)  # net cents by currency

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.clicks if self.clicks else 0.0

    def earnings_per_click(self, currency: str) -> float:
        """Net earnings in ``currency`` units per human click."""
        return self.revenue.get(currency, 0) / 100 / self.clicks if self.clicks else 0.0


@dataclass(frozen=True)
class Summary:
    revenue: dict[str, int]
    conversions: int
    reversals: int
    unattributed: dict[str, int]  # sales from no click of ours
    last_conversion_at: datetime | None

    @property
    def refund_rate(self) -> float:
        return self.reversals / self.conversions if self.conversions else 0.0

    @property
    def currency(self) -> str:
        """The currency most money came in: the one charts and earnings per click use."""
        if not self.revenue:
            return "USD"
        return max(sorted(self.revenue), key=lambda code: abs(self.revenue[code]))


def _counts() -> tuple[Any, Any]:
    sales = func.sum(case((Conversion.kind.in_(SALES), 1), else_=0))
    reversals = func.sum(case((Conversion.kind.in_(REVERSALS), 1), else_=0))
    return sales, reversals


def _add(row: Row, sales: Any, reversals: Any, currency: str, cents: Any) -> None:
    row.conversions += int(sales or 0)
    row.reversals += int(reversals or 0)
    row.revenue[currency] = row.revenue.get(currency, 0) + int(cents or 0)


def by_lesson(session: Session, course: Course) -> list[Row]:
    rows = {lesson.number: Row(f"lesson {lesson.number}") for lesson in course.lessons}
    for lesson, count in session.execute(
        select(Delivery.lesson, func.count())
        .select_from(Click)
        .join(Delivery, Delivery.id == Click.delivery_id)
        .where(Delivery.course_slug == course.slug, ~Click.scanner)
        .group_by(Delivery.lesson)
    ):
        rows.setdefault(lesson, Row(f"lesson {lesson}")).clicks = int(count)
    sales, reversals = _counts()
    for lesson, sold, reversed_, currency, cents in session.execute(
        select(
            Conversion.lesson,
            sales,
            reversals,
            Conversion.currency,
            func.sum(Conversion.amount_cents),
        )
        .where(Conversion.lesson.is_not(None))
        .group_by(Conversion.lesson, Conversion.currency)
    ):
        _add(rows.setdefault(lesson, Row(f"lesson {lesson}")), sold, reversed_, currency, cents)
    return [rows[number] for number in sorted(rows)]


def by_signup_week(session: Session, now: datetime, weeks: int = 12) -> list[Row]:
    """The last ``weeks`` signup weeks (Monday, UTC), oldest first."""
    this_week = week_of(now)
    starts = [this_week - timedelta(weeks=k) for k in range(weeks - 1, -1, -1)]
    rows = {start: Row(start.isoformat()) for start in starts}
    first = datetime.combine(starts[0], time(), tzinfo=UTC)
    bounds = [datetime.combine(start, time(), tzinfo=UTC) for start in starts]
    width = timedelta(weeks=1)
    created = Subscriber.created_at
    clicks = session.execute(
        select(
            *[func.sum(case((and_(created >= b, created < b + width), 1), else_=0)) for b in bounds]
        )
        .select_from(Click)
        .join(Subscriber, Subscriber.id == Click.subscriber_id)
        .where(~Click.scanner, created >= first)
    ).one()
    for start, count in zip(starts, clicks, strict=True):
        rows[start].clicks = int(count or 0)
    sales, reversals = _counts()
    for week, sold, reversed_, currency, cents in session.execute(
        select(
            Conversion.signup_week,
            sales,
            reversals,
            Conversion.currency,
            func.sum(Conversion.amount_cents),
        )
        .where(Conversion.signup_week >= starts[0])
        .group_by(Conversion.signup_week, Conversion.currency)
    ):
        if week in rows:
            _add(rows[week], sold, reversed_, currency, cents)
    return [rows[start] for start in starts]


def summary(session: Session) -> Summary:
    sales, reversals = _counts()
    revenue: dict[str, int] = {}
    unattributed: dict[str, int] = {}
    sold_total = reversed_total = 0
    for currency, attributed, sold, reversed_, cents in session.execute(
        select(
            Conversion.currency,
            Conversion.lesson.is_not(None),
            sales,
            reversals,
            func.sum(Conversion.amount_cents),
        ).group_by(Conversion.currency, Conversion.lesson.is_not(None))
    ):
        revenue[currency] = revenue.get(currency, 0) + int(cents or 0)
        if not attributed:
            unattributed[currency] = unattributed.get(currency, 0) + int(cents or 0)
        sold_total += int(sold or 0)
        reversed_total += int(reversed_ or 0)
    return Summary(revenue, sold_total, reversed_total, unattributed, last_conversion_at(session))


def last_conversion_at(session: Session) -> datetime | None:
    """When the latest sale was made (the network's transaction time)."""
    latest: datetime | None = session.scalar(
        select(func.max(Conversion.occurred_at)).where(Conversion.kind.in_(SALES))
    )
    return latest


def conversions_by_lesson_and_kind(session: Session) -> dict[tuple[int | None, str], int]:
    rows = session.execute(
        select(Conversion.lesson, Conversion.kind, func.count()).group_by(
            Conversion.lesson, Conversion.kind
        )
    ).all()
    return {(lesson, kind): int(count) for lesson, kind, count in rows}


def money_by_currency(session: Session) -> tuple[dict[str, int], dict[str, int]]:
    """(earned by sales, taken back by reversals) in cents per currency: both only grow."""
    earned = func.sum(case((Conversion.kind.in_(SALES), Conversion.amount_cents), else_=0))
    taken = func.sum(case((Conversion.kind.in_(REVERSALS), -Conversion.amount_cents), else_=0))
    rows = session.execute(
        select(Conversion.currency, earned, taken).group_by(Conversion.currency)
    ).all()
    return (
        {currency: int(cents or 0) for currency, cents, _ in rows},
        {currency: int(cents or 0) for currency, _, cents in rows},
    )


def money(cents_by_currency: dict[str, int]) -> str:
    """12.50 USD + 3.00 EUR; 0.00 when nothing came in."""
    if not cents_by_currency:
        return "0.00"
    return " + ".join(
        f"{cents / 100:,.2f} {currency}" for currency, cents in sorted(cents_by_currency.items())
    )
