"""`make bench` keeps working: its tick and send parts run end to end at a tiny size.

No figure is checked here (speed lives in the benchmarks, not in tests); what is
checked is that each part runs against the real PostgreSQL, Redis, Celery workers
and sink, and reports every row it promises.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests import services as real

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> str:
    if not real.postgres_available():
        real.missing(f"PostgreSQL at {real.POSTGRES_URL}")
    if not real.redis_available():
        real.missing(f"Redis at {real.REDIS_URL}")
    # A Redis database of the bench's own, so its Celery queue meets no test's worker.
    redis_url = urlsplit(real.REDIS_URL)._replace(path="/15").geturl()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--postgres", real.POSTGRES_URL,
         "--redis", redis_url, *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_tick_part_measures_both_tables_and_a_hand_out() -> None:
    out = bench("tick", "--small", "300", "--large", "600", "--due", "50", "--rounds", "1",
                "--hand-out", "200")  # fmt: skip
    assert "| 300 | 50 |" in out and "| 600 | 50 |" in out
    assert "Large / small, tick with due:" in out
    # One batch of 200 published, two rows written per email (enrollment, delivery).
    assert "| 200 | 1 | 1 |" in out and "| 2.00 |" in out


def test_the_send_part_delivers_everything_both_ways_and_samples_memory() -> None:
    out = bench("send", "--subscribers", "2000", "--single", "20", "--rss-every", "1000")
    assert "| batched | 2,000 | 1000 | 2 |" in out
    assert "| one per request | 20 | 1 | 20 |" in out
    assert "Batched / one-per-request:" in out
    assert "| end | 2,000 |" in out


def test_flags_without_a_part_run_every_part_with_them() -> None:
    from bench.__main__ import parser, with_part

    args = parser().parse_args(with_part(["--subscribers", "1000000", "--single", "2000"]))
    assert (args.part, args.subscribers, args.single) == ("all", 1000000, 2000)
    args = parser().parse_args(with_part(["--redis", "redis://127.0.0.1:6379/3", "all"]))
    assert (args.part, args.redis) == ("all", "redis://127.0.0.1:6379/3")
    args = parser().parse_args(with_part(["--redis", "redis://127.0.0.1:6379/4"]))
    assert (args.part, args.redis) == ("all", "redis://127.0.0.1:6379/4")
    args = parser().parse_args(with_part(["send", "--subscribers", "7"]))
    assert (args.part, args.subscribers) == ("send", 7)
