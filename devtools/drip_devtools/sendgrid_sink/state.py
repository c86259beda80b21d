"""What the sink knows: its settings, the fault plan, counters and recorded messages."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from drip_devtools.sendgrid_sink.faults import FaultPlan
from drip_devtools.sendgrid_sink.signing import WebhookSigner


class SinkState:
    """Shared by every handler thread; counters and records change under one lock."""

    def __init__(
        self,
        signer: WebhookSigner,
        api_key: str | None = None,
        webhook_url: str | None = None,
        recording: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.signer = signer
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.recording = recording
        self.clock = clock or time.time
        self.plan = FaultPlan()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._records: list[dict[str, Any]] = []

    def count(self, status: int | None, **counts: int) -> None:
        """Count one mail-send request by its answer (None: dropped), plus named counters."""
        with self._lock:
            self._counts["requests"] += 1
            if status is not None:
                self._statuses[status] += 1
            self._counts.update(counts)

    def keep(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._records.extend(records)

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = {name: self._counts[name] for name in STAT_NAMES}
            statuses = {str(code): n for code, n in sorted(self._statuses.items())}
            recorded = len(self._records)
        return {**counts, "statuses": statuses, "recording": self.recording, "recorded": recorded}

    def reset(self) -> None:
        """Forget counters and records; settings and the fault plan stay."""
        with self._lock:
            self._counts.clear()
            self._statuses.clear()
            self._records.clear()


# requests: every mail send; accepted: answered 202; messages: personalizations
# accepted; sandbox: answered 200; faults: answered (or dropped) by a fault rule.
STAT_NAMES = ("requests", "accepted", "messages", "recipients", "sandbox", "faults", "dropped")
