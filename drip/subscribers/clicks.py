"""Call-to-action clicks, with likely scanner clicks kept apart from human ones."""

from __future__ import annotations

import re
import secrets
import string
from datetime import datetime, timedelta
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

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


# ClickBank's HopLink tid takes at most 24 letters and digits. Lower case only, so a network
# that changes the case of a tracking code still hands back a ref we can match; 20 characters
# of 36 symbols is about 103 random bits, too many to guess one.
REF_ALPHABET = string.ascii_lowercase + string.digits
REF_LENGTH = 20


def new_ref() -> str:
    return "".join(secrets.choice(REF_ALPHABET) for _ in range(REF_LENGTH))


def with_click_ref(url: str, param: str, ref: str) -> str:
    """``url`` with ``param=ref`` in its query, replacing any value the course file put there.

    The rest of the query is kept byte for byte: a network may sign or parse it its own way.
    """
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.split("=")[0]) != param
    ]
    query = "&".join([*kept, f"{quote(param)}={ref}"])
    return urlunsplit(parts._replace(query=query))


def looks_like_scanner(
    method: str, user_agent: str, sent_at: datetime | None, now: datetime
) -> bool:
    if method == "HEAD" or not user_agent or SCANNER_AGENTS.search(user_agent):
        return True
    return sent_at is not None and timedelta(0) <= now - sent_at < SCANNER_WINDOW


def record_click(
    session: Session, delivery_id: int, *, now: datetime, method: str, user_agent: str
) -> Click | None:
    """Record one click on a delivery's call to action; None for an unknown delivery.

    The click gets a fresh ref for the affiliate network to hand back with a sale.
    """
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
        ref=new_ref(),
    )
    session.add(click)
    return click
