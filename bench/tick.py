"""What a tick costs as the table grows: N enrollments, the same number due, one tick each.

    python -m bench tick                         # 20,000 vs 200,000 enrollments
    python -m bench tick --large 1000000         # the headline ratio

The tick must find what is due through its index, so its cost follows the
number due, not the size of the table. Sending is not part of this figure
(`python -m bench send` measures it): the batches the tick hands out are
only counted.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import psycopg

from bench.send import course_slug, create_database, drop_database
from drip.clock import system_clock
from drip.config import load_settings
from drip.data.db import Database
from drip.data.migrate import upgrade


@dataclass
class Tick:
    enrollments: int
    due: int
    due_tick_s: float
    idle_tick_s: float


def seed(url: str, total: int, due: int) -> None:
    """`total` active enrollments; `due` of them due a minute ago, the rest tomorrow."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("TRUNCATE subscribers RESTART IDENTITY CASCADE")
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
                      CASE WHEN id <= %s THEN now() - interval '1 minute'
                           ELSE now() + interval '1 day' END,
                      now()
               FROM subscribers""",
            (course_slug(), due),
        )
        db.execute("VACUUM ANALYZE")


def one_tick(database: Database, settings_env: dict[str, str]) -> float:
    from drip.course.loader import load_course
    from drip.sending import dispatch

    settings = load_settings(settings_env)
    course = load_course(settings.course_dir)
    started = time.perf_counter()
    dispatch.run_tick(
        database,
        course,
        now=system_clock(),
        day_seconds=settings.day_seconds,
        lease_seconds=settings.lease_seconds,
        batch_size=settings.batch_size,
        enqueue=lambda ids: None,
    )
    return time.perf_counter() - started


def measure(url: str, env: dict[str, str], total: int, due: int) -> Tick:
    seed(url, total, due)
    database = Database(url)
    try:
        due_s = one_tick(database, env)
        idle_s = one_tick(database, env)  # nothing due any more: the idle tick every minute
    finally:
        database.dispose()
    return Tick(total, due, due_s, idle_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--small", type=int, default=20_000, help="enrollments, small table")
    parser.add_argument("--large", type=int, default=200_000, help="enrollments, large table")
    parser.add_argument("--due", type=int, default=5_000, help="enrollments due in each")


def main(args: argparse.Namespace) -> str:
    from bench.send import ROOT

    url = create_database(args.postgres)
    env = {
        "DRIP_DATABASE_URL": url,
        "DRIP_COURSE_DIR": str(ROOT / "course"),
        "DRIP_SECRET_KEY": "bench-secret-key-0123456789",
    }
    try:
        upgrade_database = Database(url)
        upgrade(upgrade_database)
        upgrade_database.dispose()
        small = measure(url, env, args.small, args.due)
        large = measure(url, env, args.large, args.due)
    finally:
        drop_database(args.postgres, url)
    lines = [
        f"Command: `python -m bench tick --small {args.small} --large {args.large} "
        f"--due {args.due}` (PostgreSQL)",
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
        f"Large / small, tick with due: **{large.due_tick_s / small.due_tick_s:.2f}**; "
        f"idle tick: **{large.idle_tick_s / max(small.idle_tick_s, 1e-6):.2f}**",
    ]
    return "\n".join(lines)
