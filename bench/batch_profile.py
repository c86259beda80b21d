"""What one worker batch costs, phase by phase: `python -m bench.batch_profile`.

Seeds a scratch PostgreSQL database, runs the real tick with the batches held
back, starts `drip sendgrid-sink`, then calls `delivery.deliver_batch` in this
process for each batch (the send task without Celery around it) and prints the
SQL statements of one batch, the milliseconds a batch spends in each phase and
the emails per second of one process. ``--cprofile`` adds a cProfile listing.
Compare phases within one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import os
import pstats
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event

from bench import add_store_arguments
from bench.send import (
    API_KEY,
    cpu_seconds,
    create_database,
    drop_database,
    environment,
    seed,
    wait_for_port,
)
from drip.cli.embedded_redis import free_port
from drip.config import load_settings
from drip.data.db import Database
from drip.data.migrate import upgrade


def timed(owner: Any, name: str, label: str, spent: collections.Counter[str]) -> None:
    """Wrap owner.name so that its time adds up under ``label`` (if this code has it)."""
    original: Callable[..., Any] | None = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_profile", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=30_000)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--claim-in-worker",
        action="store_true",
        help="the tick inserts deliveries queued and each batch is claimed by the send task",
    )
    add_store_arguments(parser)
    args = parser.parse_args()
    url = create_database(args.postgres)
    port = free_port()
    var_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"drip-profile-{secrets.token_hex(3)}"
    var_dir.mkdir(parents=True)
    env = environment(
        url, args.redis, f"http://127.0.0.1:{port}", f"drip-profile-{secrets.token_hex(3)}", var_dir
    )
    drip = shutil.which("drip") or str(Path(sys.executable).parent / "drip")
    sink = subprocess.Popen(
        [drip, "sendgrid-sink", "--port", str(port), "--api-key", API_KEY],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        database = Database(url)
        upgrade(database)
        database.dispose()
        wait_for_port(port)
        seed(url, args.subscribers)
        print(profile(env, args.cprofile, not args.claim_in_worker, sink.pid))
    finally:
        sink.terminate()
        sink.wait()
        drop_database(args.postgres, url)
        shutil.rmtree(var_dir, ignore_errors=True)


def backends(url: str) -> list[int]:
    """The PostgreSQL server processes serving this database's sessions."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def profile(
    env: dict[str, str], with_cprofile: bool, claim_in_tick: bool = True, sink_pid: int = 0
) -> str:
    from drip.app import create_app
    from drip.mail import sendgrid
    from drip.sending import delivery, dispatch
    from drip.sending.journal import SendJournal

    settings = load_settings(env)
    app = create_app(settings)
    services = app.extensions["drip"]
    batches: list[tuple[list[int], datetime | None]] = []

    def enqueue(ids: list[int], claimed_at: datetime | None = None) -> None:
        batches.append((ids, claimed_at))

    dispatch.run_tick(
        services.database,
        services.course,
        now=services.now(),
        day_seconds=settings.day_seconds,
        lease_seconds=settings.lease_seconds,
        batch_size=1000,
        enqueue=enqueue,
        enqueue_claimed=enqueue if claim_in_tick else None,
    )
    statements: list[str] = []
    event.listen(
        services.database.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(" ".join(statement.split())[:70]),
    )

    def deliver(chosen: list[tuple[list[int], datetime | None]]) -> None:
        for ids, claimed_at in chosen:
            delivery.deliver_batch(
                services.database,
                services.course,
                services.mailer,
                services.links,
                ids,
                lease_seconds=settings.lease_seconds,
                clock=services.clock,
                journal=services.journal,
                claimed_at=claimed_at,
            )

    lines = []
    with app.app_context():
        deliver(batches[:2])  # warm: first connections, the lesson rendered
        statements.clear()
        deliver(batches[2:3])
        lines += ["SQL statements of one batch:", *(f"  {s}" for s in statements), ""]
        rest = batches[3:]
        spent: collections.Counter[str] = collections.Counter()
        for owner, name, label in (
            (delivery, "_take_handed_out", "take a batch the tick claimed (journal mark, load)"),
            (delivery, "_claim", "claim (one statement on PostgreSQL)"),
            (delivery._Sender, "recall", "journal read (retakes only)"),
            (delivery, "_lesson_batch", "recipients: links, values"),
            (SendJournal, "posting", "journal: posting"),
            (sendgrid, "mail_body", "request body"),
            (sendgrid.SendGridMailer, "_post", "POST to the sink (JSON, HTTP, sink)"),
            (SendJournal, "accepted", "journal: accepted"),
            (delivery._Outcomes, "write", "outcomes UPDATE"),
            (delivery, "_provider_takes_batches", "circuit, retries pulled forward"),
            (delivery, "_update_circuit", "circuit, retries pulled forward"),
            (SendJournal, "forget", "journal: forget"),
        ):
            timed(owner, name, label, spent)
        profiler = cProfile.Profile() if with_cprofile else None
        url = env["DRIP_DATABASE_URL"]
        server_before = {pid: cpu_seconds(pid) for pid in backends(url)}
        sink_before = cpu_seconds(sink_pid)
        own_before = time.process_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        deliver(rest)
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        own = time.process_time() - own_before
        server = sum(cpu_seconds(pid) - server_before.get(pid, 0.0) for pid in backends(url))
        sink_cpu = cpu_seconds(sink_pid) - sink_before
    services.database.dispose()
    emails = sum(len(ids) for ids, _ in rest)
    lines.append(
        f"{len(rest)} batches, {emails:,} emails in {elapsed:.2f} s: {emails / elapsed:,.0f} "
        f"emails/s in one process{' (under cProfile)' if profiler else ''}"
    )
    lines += ["", "| phase | ms a batch |", "|---|---:|"]
    lines += [f"| {label} | {seconds / len(rest) * 1000:.1f} |" for label, seconds in spent.items()]
    lines.append(f"| whole batch | {elapsed / len(rest) * 1000:.1f} |")
    per_batch = 1000 / len(rest)
    lines += [
        "",
        "CPU ms a batch (/proc, in clock ticks): "
        f"this process {own * per_batch:.1f}, its PostgreSQL sessions {server * per_batch:.1f}, "
        f"the sink {sink_cpu * per_batch:.1f}",
    ]
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(30)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
