"""What a tick costs as the table grows, and how fast it hands out a morning's send.

    python -m bench tick                                         # 20,000 vs 200,000
    python -m bench tick --small 20000 --large 1000000 --due 5000  # the headline ratio
    python -m bench tick --hand-out 1000000                      # a million due at once

Table growth: N active enrollments of which ``--due`` are due in each of
``--rounds`` rounds a minute apart, the rest tomorrow. Each round is one tick
with that round's clock (it materializes the round's due enrollments and
hands them out) and then an idle tick at the same clock (nothing due). The
figure is the median over the rounds, so one slow commit on a shared machine
does not decide it. The tick must find what is due through its index, so its
cost follows the number due, not the size of the table.

Hand-out: ``--hand-out`` enrollments all due, one tick through the real task
function (``drip.tasks.run_tick_now``), which materializes them and publishes
each batch as a Celery message to Redis (on a scratch queue, removed
afterwards; no worker consumes it). Reported: the tick's time and rate, the
rows PostgreSQL wrote per email (inserts, updates and deletes counted by
``pg_stat_user_tables``; row locks are not rows written, the WAL bytes per
email include them).

Sending is not part of these figures (`python -m bench send` measures it).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import redis

from bench.send import course_slug, create_database, drop_database, environment
from drip.clock import system_clock
from drip.config import load_settings
from drip.data.db import Database
from drip.data.migrate import upgrade


@dataclass
class Tick:
    enrollments: int
    due: int
    rounds: int
    due_tick_s: float
    idle_tick_s: float


@dataclass
class HandOut:
    emails: int
    batches: int
    published: int
    tick_s: float
    rows_written: int
    wal_bytes: int

    @property
    def rate(self) -> float:
        return self.emails / self.tick_s


def seed(url: str, total: int, due: int, rounds: int, start: datetime) -> None:
    """`total` active enrollments: round r's `due` due at start + r minutes, the rest tomorrow."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("TRUNCATE subscribers, enrollments, deliveries RESTART IDENTITY CASCADE")
        db.execute(
            """INSERT INTO subscribers
                   (email, first_name, timezone, status, created_at, confirmed_at)
               SELECT 'reader' || n || '@bench.example', 'Reader', 'UTC', 'active', now(), now()
               FROM generate_series(1, %s) AS n""",
            (total,),
        )
        db.execute(
            """INSERT INTO enrollments (subscriber_id, course_slug, status, next_lesson,
                                        next_due_at, started_at)
               SELECT id, %s, 'active', 1,
                      CASE WHEN id <= %s * %s
                           THEN %s + make_interval(mins => ((id - 1) / %s)::int)
                           ELSE %s + interval '1 day' END,
                      %s
               FROM subscribers""",
            (course_slug(), due, rounds, start, due, start, start),
        )
        db.execute("VACUUM ANALYZE")
        # The bulk load's dirty pages are written now, not during the ticks measured.
        db.execute("CHECKPOINT")


def one_tick(database: Database, env: dict[str, str], now: datetime) -> float:
    from drip.course.loader import load_course
    from drip.sending import dispatch

    settings = load_settings(env)
    course = load_course(settings.course_dir)
    started = time.perf_counter()
    dispatch.run_tick(
        database,
        course,
        now=now,
        day_seconds=settings.day_seconds,
        lease_seconds=settings.lease_seconds,
        batch_size=settings.batch_size,
        enqueue=lambda ids: None,
    )
    return time.perf_counter() - started


def sent(url: str, now: datetime) -> None:
    """What a worker would do with the round's batches, so the next round finds them done."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "UPDATE deliveries SET status = 'sent', sent_at = %s, attempts = 1"
            " WHERE status = 'queued'",
            (now,),
        )


def measure(url: str, env: dict[str, str], total: int, due: int, rounds: int) -> Tick:
    start = system_clock().replace(microsecond=0) - timedelta(hours=1)
    seed(url, total, due, rounds, start)
    database = Database(url)
    due_s, idle_s = [], []
    try:
        for r in range(rounds):
            now = start + timedelta(minutes=r, seconds=30)
            due_s.append(one_tick(database, env, now))
            idle_s.append(one_tick(database, env, now))  # nothing due any more
            sent(url, now)
    finally:
        database.dispose()
    return Tick(total, due, rounds, statistics.median(due_s), statistics.median(idle_s))


def written(url: str) -> tuple[int, int]:
    """(rows inserted + updated + deleted in every table so far, WAL position in bytes)."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        ).fetchone()
        wal = db.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        db.execute("SELECT pg_stat_clear_snapshot()")
    assert rows is not None and wal is not None
    return int(rows[0]), int(wal[0])


class _Drain:
    """Takes every message off `queue` as it arrives, counting them, until stopped."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.queue = queue
        self.count = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-drain", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            taken = self.client.lpop(self.queue, 100)
            if taken:
                self.count += len(taken)  # type: ignore[arg-type]
            else:
                time.sleep(0.01)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        self.client.close()
        return self.count


def hand_out(url: str, redis_url: str, count: int) -> HandOut:
    """One tick through the real task function, publishing to a scratch queue.

    A thread empties the queue as the tick fills it, as send tasks would: the tick
    paces its hand-outs by the queue's length (drip/sending/pace.py), and a queue
    nobody takes from would have it wait for the workers instead of measuring it.
    """
    from bench.send import seed as seed_due
    from drip.app import create_app
    from drip.tasks import run_tick_now

    seed_due(url, count)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CHECKPOINT")
    var_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"drip-bench-{secrets.token_hex(3)}"
    var_dir.mkdir(parents=True)
    queue = f"drip-bench-tick-{secrets.token_hex(3)}"
    env = environment(url, redis_url, "http://127.0.0.1:9", queue, var_dir)
    client = redis.Redis.from_url(redis_url)
    try:
        app = create_app(load_settings(env))
        time.sleep(1)  # pg_stat_user_tables is updated by the backends about once a second
        rows_before, wal_before = written(url)
        taken = _Drain(redis_url, queue)
        with app.app_context():
            started = time.perf_counter()
            report = run_tick_now(system_clock())
            tick_s = time.perf_counter() - started
        published = taken.stop() + int(client.llen(queue))  # type: ignore[arg-type]
        app.extensions["drip"].database.dispose()
        time.sleep(1.5)
        rows_after, wal_after = written(url)
    finally:
        client.delete(queue)
        client.close()
        shutil.rmtree(var_dir, ignore_errors=True)
    assert report.materialized == count, (report.materialized, count)
    return HandOut(
        count,
        len(report.batches),
        published,
        tick_s,
        rows_after - rows_before,
        wal_after - wal_before,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--small", type=int, default=20_000, help="enrollments, small table")
    parser.add_argument("--large", type=int, default=200_000, help="enrollments, large table")
    parser.add_argument("--due", type=int, default=5_000, help="enrollments due in each round")
    parser.add_argument("--rounds", type=int, default=5, help="ticks measured per table size")
    parser.add_argument(
        "--hand-out", type=int, default=0, help="also time one tick handing out this many due"
    )


def main(args: argparse.Namespace) -> str:
    from bench.send import ROOT

    url = create_database(args.postgres)
    env = {
        "DRIP_DATABASE_URL": url,
        "DRIP_COURSE_DIR": str(ROOT / "course"),
        "DRIP_SECRET_KEY": "bench-secret-key-0123456789",
    }
    handed: HandOut | None = None
    try:
        upgrade_database = Database(url)
        upgrade(upgrade_database)
        upgrade_database.dispose()
        small = measure(url, env, args.small, args.due, args.rounds)
        large = measure(url, env, args.large, args.due, args.rounds)
        if args.hand_out:
            handed = hand_out(url, args.redis, args.hand_out)
    finally:
        drop_database(args.postgres, url)
    command = (
        f"python -m bench tick --small {args.small} --large {args.large} --due {args.due} "
        f"--rounds {args.rounds}" + (f" --hand-out {args.hand_out}" if args.hand_out else "")
    )
    lines = [
        f"Command: `{command}` (PostgreSQL, {os.cpu_count()} cores)",
        "",
        "| enrollments | due | tick with due s | idle tick s |",
        "|---:|---:|---:|---:|",
    ]
    for t in (small, large):
        lines.append(
            f"| {t.enrollments:,} | {t.due:,} | {t.due_tick_s:.3f} | {t.idle_tick_s:.4f} |"
        )
    lines += [
        "",
        f"Medians of {args.rounds} rounds. Large / small, tick with due: "
        f"**{large.due_tick_s / small.due_tick_s:.2f}**; "
        f"idle tick: **{large.idle_tick_s / max(small.idle_tick_s, 1e-6):.2f}**",
    ]
    if handed:
        lines += [
            "",
            "| due | batches | messages published | tick s | emails/s | rows written / email "
            "| WAL bytes / email |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {handed.emails:,} | {handed.batches:,} | {handed.published:,} | "
            f"{handed.tick_s:.2f} | {handed.rate:,.0f} | "
            f"{handed.rows_written / handed.emails:.2f} | "
            f"{handed.wal_bytes / handed.emails:,.0f} |",
        ]
    return "\n".join(lines)
