"""Keep a claimed batch's lease alive while this worker is still working on it.

A claimed delivery is "sending" until ``lease_until``; past it the tick hands
it to another worker. The lease is short, so that a batch of a worker that
died goes out again within seconds. A worker that is alive but waiting (for
its share of DRIP_SEND_RATE, for SendGrid's answer, for the database to come
back to record that answer) renews it every third of a lease from a
background thread; a killed worker's thread dies with it and the lease runs out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from drip.data.db import Database
from drip.data.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)


def renew(database: Database, delivery_ids: Sequence[int], until: datetime) -> int:
    """Push the lease of the still-sending ``delivery_ids`` to ``until``; how many it kept."""
    with database.session() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.SENDING.value)
            .values(lease_until=until)
        )
        return int(getattr(result, "rowcount", 0))


class LeaseKeeper:
    """A context manager: renews the lease of ``delivery_ids`` until the block ends."""

    def __init__(
        self,
        database: Database,
        delivery_ids: Sequence[int],
        *,
        lease_seconds: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.database = database
        self.delivery_ids = list(delivery_ids)
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drip-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        if self.delivery_ids:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            until = self.clock() + timedelta(seconds=self.lease_seconds)
            try:
                renew(self.database, self.delivery_ids, until)
            except SQLAlchemyError as exc:
                # The database is away: the outcome write waits for it too, and the
                # send journal tells a later claimant what this worker already sent.
                log.warning("could not renew the send lease: %s", exc.__class__.__name__)
