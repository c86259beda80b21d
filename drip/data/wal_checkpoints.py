"""SQLite's write-ahead log moved into the database file from a thread, not from a request.

In WAL mode SQLite checkpoints (copies the log into the database file and
syncs it) when a commit finds the log over 1,000 pages, in the connection
that committed (https://sqlite.org/wal.html#automatic_checkpoint). For a
signup that is a ~20 ms wait about once every 140 signups (measured one
after another on one thread: p99.9 20 ms against a p50 of 0.3 ms), and every
signup of the process queued behind it waits as long.

Connections that write signups turn the automatic checkpoint off
(`AUTOCHECKPOINT_OFF`) and call `soon()` after each commit; a thread of the
process then checkpoints in PASSIVE mode, which waits for no reader or
writer, at most every `PAUSE_SECONDS`. Other connections (the workers, the
ORM's sessions) keep SQLite's automatic checkpoint.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

AUTOCHECKPOINT_OFF = "PRAGMA wal_autocheckpoint = 0"
# A log longer than this (SQLite's own threshold) is started over after the checkpoint.
RESTART_PAGES = 1000
# Commits meanwhile share the next checkpoint.
PAUSE_SECONDS = 0.25


class WalCheckpoints:
    """One checkpointing thread per process and database file, started on first use."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._wanted = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()
        self._pid = 0

    def soon(self) -> None:
        """Ask for a checkpoint a moment from now; returns at once."""
        if self._pid != os.getpid():  # none yet, or inherited through a fork
            with self._lock:
                if self._pid != os.getpid():
                    self._stopped = False
                    name = "drip-wal-checkpoints"
                    threading.Thread(target=self._run, name=name, daemon=True).start()
                    self._pid = os.getpid()
        self._wanted.set()

    def stop(self) -> None:
        self._stopped = True
        self._wanted.set()

    def _run(self) -> None:
        # No waiting for locks: a checkpoint that would have to wait for readers
        # or a writer holds signups up meanwhile (RESTART blocks writers while it
        # waits); it gives up at once and the next one tries again.
        connection = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
        try:
            while True:
                self._wanted.wait()
                if self._stopped:
                    return
                self._wanted.clear()
                try:
                    self._checkpoint(connection)
                except sqlite3.Error as exc:  # the next commit asks again
                    log.warning("SQLite checkpoint failed: %s", exc)
                time.sleep(PAUSE_SECONDS)
        finally:
            connection.close()

    @staticmethod
    def _checkpoint(connection: sqlite3.Connection) -> None:
        _busy, log_pages, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if log_pages >= RESTART_PAGES:
            # Under a steady stream of commits a passive checkpoint never catches
            # up with the last one, and the log only starts again from its
            # beginning after one that did: without this it grows for as long
            # as the stream lasts. RESTART holds writers off while it copies
            # what came since the passive one (little) and starts the log over.
            connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
