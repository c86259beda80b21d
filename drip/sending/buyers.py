"""Who has bought: a subscriber with a sale that was not refunded or charged back.

The sender asks it for each batch, so buyers get the course's note for buyers
instead of the call to action; a reversal puts the pitch back. On PostgreSQL
the question rides in the statement that claims the batch (``has_bought``);
elsewhere it is one query for the batch (``buyers``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from drip.data.models import REVERSALS, SALES, Conversion


def _not_reversed(sale: Any) -> ColumnElement[bool]:
    reversal = aliased(Conversion)
    # A network reports a refund or chargeback under the sale's own receipt (txid).
    return ~exists().where(
        and_(
            reversal.source == sale.source,
            reversal.external_id == sale.external_id,
            reversal.kind.in_(REVERSALS),
        )
    )


def buyers(session: Session, subscriber_ids: Collection[int]) -> set[int]:
    """Those of ``subscriber_ids`` who hold at least one sale not reversed."""
    if not subscriber_ids:
        return set()
    rows = session.scalars(
        select(Conversion.subscriber_id)
        .where(
            Conversion.subscriber_id.in_(list(subscriber_ids)),
            Conversion.kind.in_(SALES),
            _not_reversed(Conversion),
        )
        .distinct()
    )
    return {int(subscriber_id) for subscriber_id in rows if subscriber_id is not None}


def has_bought(subscriber_id: Any) -> ColumnElement[bool]:
    """True where the subscriber ``subscriber_id`` names holds a sale not reversed."""
    sale = aliased(Conversion)
    return exists().where(
        sale.subscriber_id == subscriber_id, sale.kind.in_(SALES), _not_reversed(sale)
    )
