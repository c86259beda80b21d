"""Keep a tick's hand-outs only a little ahead of the send tasks taking them.

A morning's tick materializes a million deliveries faster than two worker
processes send them. Handed out all at once, the last batches wait in the
broker's queue for most of the send; a batch the tick inserted already claimed
(dispatch.HAND_OUT_LEASES) that waits past its window must be claimed again by
its send task, a second write of every row. Materialized only while few
hand-outs wait, each batch is taken within seconds of its hand-out, and the
database's work for the tick is spread over the send instead of competing with
it for the cores at the start.

The tick asks ``waiting`` (how many messages wait in the send queue) before
each chunk. If the queue does not go down for ``patience`` seconds (no worker
running, or all of them stuck), the tick stops waiting and hands out the rest
at once, as it did before: the rows are safe in the database either way, and
a tick must not hang on the workers. It also stops once it has paced for
``budget`` seconds (the interval between ticks): a tick runs in a worker child,
and the next tick, which may start while this one paces, must not find it still
pacing and pace beside it, holding a second child that could send.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Deliveries handed out and not yet taken that a pacing tick allows: a few chunks
# (dispatch.MATERIALIZE_CHUNK), so that the workers never run dry while the next one
# is made, and at 5,000-15,000 emails a second 1.3-4 s of work, inside the window in
# which a send task takes a pre-claimed batch without a write (a third of a lease:
# 6.7 s with the default 20 s lease; delivery.TAKE_LEFT).
AHEAD = 20_000
POLL_SECONDS = 0.05


class Pace:
    """Blocks each chunk of a tick until fewer than ``ahead`` deliveries wait; thread-safe."""

    def __init__(
        self,
        waiting: Callable[[], int],
        *,
        batch_size: int,
        patience: float,
        ahead: int = AHEAD,
        budget: float | None = None,
    ) -> None:
        self.waiting = waiting
        # In messages: the queue is counted in hand-outs of up to batch_size each.
        self.limit = max(1, -(-ahead // max(1, batch_size)))
        self.patience = patience
        self.until = None if budget is None else time.monotonic() + budget
        self._lock = threading.Lock()
        self._given_up = False

    def wait(self) -> None:
        """Return once the queue has room, the workers stopped taking, or it cannot be read."""
        lowest, since = None, time.monotonic()
        while not self._given_up:
            if self.until is not None and time.monotonic() > self.until:
                log.info("paced the tick for its interval: handing out the rest")
                self._given_up = True
                return
            try:
                with self._lock:  # one broker channel, shared by the materializing threads
                    count = self.waiting()
            except Exception as exc:  # a broker away fails the hand-outs, not the pacing
                log.warning("could not read the send queue's length, not pacing: %s", exc)
                self._given_up = True
                return
            if count < self.limit:
                return
            if lowest is None or count < lowest:
                lowest, since = count, time.monotonic()
            elif time.monotonic() - since > self.patience:
                log.warning(
                    "the send queue stayed at %d hand-outs for %.0f s: handing out the rest",
                    count,
                    self.patience,
                )
                self._given_up = True
                return
            time.sleep(POLL_SECONDS)
