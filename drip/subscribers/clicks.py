"""Call-to-action clicks, with likely scanner clicks kept apart from human ones."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from drip.data.models import Click, Delivery

# Link scanners (corporate mail security, previewers) fetch links within
# seconds of delivery, often with HEAD, and name themselves in the user agent.
SCANNER_WINDOW = timedelta(seconds=10)
SCANNER_AGENTS = re.compile(
    r"bot|crawler|spider|scan|preview|proofpoint|mimecast|barracuda|safelinks|"
    r"google-safety|microsoft office|python-requests|curl|wget|headless",
    re.IGNORECASE,
)


def looks_like_scanner(
    method: str, user_agent: str, sent_at: datetime | None, now: datetime
) -> bool:
    if method == "HEAD" or not user_agent or SCANNER_AGENTS.search(user_agent):
        return True
    return sent_at is not None and timedelta(0) <= now - sent_at < SCANNER_WINDOW


def record_click(
    session: Session, delivery_id: int, *, now: datetime, method: str, user_agent: str
) -> Click | None:
    """Record one click on a delivery's call to action; None for an unknown delivery."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return None
    click = Click(
        delivery_id=delivery.id,
        subscriber_id=delivery.subscriber_id,
        lesson=delivery.lesson,
        clicked_at=now,
        scanner=looks_like_scanner(method, user_agent, delivery.sent_at, now),
        user_agent=user_agent[:400],
    )
    session.add(click)
    return click
