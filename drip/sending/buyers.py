"""Who has bought: a subscriber with a sale that was not refunded or charged back.

The sender asks it for each batch, so buyers get the course's note for buyers
instead of the call to action; a reversal puts the pitch back.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from drip.data.models import REVERSALS, SALES, Conversion


def buyers(session: Session, subscriber_ids: Collection[int]) -> set[int]:
    """Those of ``subscriber_ids`` who hold at least one sale not reversed."""
    if not subscriber_ids:
        return set()
    reversal = aliased(Conversion)
    # A network reports a refund or chargeback under the sale's own receipt (txid).
    reversed_sale = exists().where(
        and_(
            reversal.source == Conversion.source,
            reversal.external_id == Conversion.external_id,
            reversal.kind.in_(REVERSALS),
        )
    )
    rows = session.scalars(
        select(Conversion.subscriber_id)
        .where(
            Conversion.subscriber_id.in_(list(subscriber_ids)),
            Conversion.kind.in_(SALES),
            ~reversed_sale,
        )
        .distinct()
    )
    return {int(subscriber_id) for subscriber_id in rows if subscriber_id is not None}
