"""The service as docker-compose starts it, on this machine, for one experiment.

Two `celery worker` processes and one `celery beat` against a scratch
PostgreSQL database, a throwaway Redis without persistence on its own port,
and `drip sendgrid-sink` in its own process, recording every recipient and
subject. Every process runs in its own process group, so a kill takes its
pool children too; ``close()`` tears everything down and drops the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from drip.cli.embedded_redis import free_port, redis_server_binary
from drip.course.loader import load_course
from drip.data.db import Database
from drip.data.migrate import upgrade

API_KEY = "SG.faults-key.local-only"
OPEN = ("queued", "sending", "retrying")
# SendGrid takes a moment to answer; so a fault can land while a batch is being posted.
ANSWER_DELAY = {"delay": 0.5}


@dataclass
class Counts:
    expected: int
    delivered: int
    lost: int
    duplicates: int
    unflagged_duplicates: int
    flagged: int


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f}s")


class Stack:
    def __init__(
        self,
        work_dir: Path,
        *,
        admin_url: str,
        course_dir: Path,
        subscribers: int,
        day_seconds: int,
        lease_seconds: int = 30,
        tick_seconds: float = 1.0,
    ) -> None:
        self.work_dir = work_dir
        self.admin_url = admin_url
        course_dir = course_dir.resolve()  # the processes run in work_dir
        self.course = load_course(course_dir)
        self.subscribers = subscribers
        self.name = f"drip_faults_{secrets.token_hex(4)}"
        self.url = admin_url.rpartition("/")[0] + f"/{self.name}"
        self.redis_port = free_port()
        self.sink_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: list[str] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIP_", "SENDGRID_"))}
        self.env.update(
            DRIP_DATABASE_URL=self.url,
            DRIP_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            DRIP_EMAIL_BACKEND="sendgrid",
            SENDGRID_API_KEY=API_KEY,
            DRIP_SENDGRID_HOST=f"http://127.0.0.1:{self.sink_port}",
            DRIP_COURSE_DIR=str(course_dir),
            DRIP_BASE_URL="https://drip.example",
            DRIP_SECRET_KEY="faults-secret-key-0123456789",
            DRIP_VAR_DIR=str(work_dir / "var"),
            DRIP_DAY_SECONDS=str(day_seconds),
            DRIP_TICK_SECONDS=str(tick_seconds),
            DRIP_SEND_LEASE_SECONDS=str(lease_seconds),
            DRIP_SENDGRID_TIMEOUT="5",
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        (self.work_dir / "var").mkdir(parents=True, exist_ok=True)
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        database = Database(self.url)
        upgrade(database)
        database.dispose()
        self.start_redis()
        drip = str(Path(sys.executable).parent / "drip")
        self.spawn("sink", [drip, "sendgrid-sink", "--port", str(self.sink_port),
                            "--api-key", API_KEY])  # fmt: skip
        wait_for(lambda: self._sink_up(), 20, "the sink listening")
        self.sink("POST", "recording", {"enabled": True})
        self.sink("POST", "faults", {"rules": [ANSWER_DELAY]})
        self.seed()
        for name in ("worker1", "worker2"):
            self.start_worker(name)
        self.start_beat("beat")

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name, signal.SIGKILL)
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.admin_url, autocommit=True) as admin,
        ):
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def spawn(self, name: str, command: list[str]) -> None:
        with (self.work_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.work_dir,
            )  # fmt: skip

    def stop(
        self, name: str, signum: int = signal.SIGTERM, grace: float = 20.0, *, group: bool = True
    ) -> None:
        """Signal the process group (or, with ``group=False``, its leader alone); SIGKILL
        the group if it is not gone within ``grace``."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signum)
            else:
                os.kill(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def start_worker(self, name: str) -> None:
        # docker-compose runs --concurrency 4 per container; 2 here, on a shared 2-core machine.
        self.spawn(name, [sys.executable, "-m", "celery", "-A", "drip.worker:celery", "worker",
                          "--loglevel", "INFO", "--concurrency", "2", "--without-gossip",
                          "--without-mingle", "--hostname", f"{name}@%h"])  # fmt: skip

    def start_beat(self, name: str) -> None:
        self.spawn(name, [sys.executable, "-m", "celery", "-A", "drip.worker:celery", "beat",
                          "--loglevel", "INFO",
                          "--schedule", str(self.work_dir / f"{name}-schedule")])  # fmt: skip

    def start_redis(self) -> None:
        command = [redis_server_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"]  # fmt: skip
        self.spawn("redis", command)
        wait_for(lambda: self._redis_up(), 10, "redis answering")

    def _redis_up(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.redis_port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def _sink_up(self) -> bool:
        try:
            self.sink("GET", "stats")
            return True
        except OSError:
            return False

    # -- the database and the sink ------------------------------------------

    def seed(self) -> None:
        """Confirmed subscribers whose first lesson is due now, inserted set-based."""
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(
                """INSERT INTO subscribers
                       (email, first_name, timezone, status, created_at, confirmed_at)
                   SELECT 'reader' || n || '@faults.example', 'Reader', 'UTC', 'active',
                          now(), now()
                   FROM generate_series(1, %s) AS n""",
                (self.subscribers,),
            )
            db.execute(
                """INSERT INTO enrollments (subscriber_id, course_slug, status, next_lesson,
                                            next_due_at, started_at)
                   SELECT id, %s, 'active', 1, now(), now() FROM subscribers""",
                (self.course.slug,),
            )

    def query(self, sql: str) -> Any:
        with psycopg.connect(self.url, connect_timeout=5) as db:
            row = db.execute(sql).fetchone()
            return row[0] if row else None

    def backlog(self) -> int | None:
        """Due lessons not yet out: due enrollments plus open deliveries; None if unreachable."""
        try:
            return int(
                self.query(
                    f"""SELECT (SELECT count(*) FROM enrollments
                                 WHERE status = 'active' AND next_due_at <= now())
                             + (SELECT count(*) FROM deliveries WHERE status IN {OPEN})"""
                )
            )
        except psycopg.Error:
            return None

    def check_alive(self) -> None:
        """Restart an exited worker or beat, as docker-compose's `restart: unless-stopped`
        does, and count it; anything else exiting ends the experiment."""
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            if not name.startswith(("worker", "beat")):
                raise RuntimeError(f"{name} exited with {process.returncode}; see {name}.log")
            self.restarts.append(f"{name} exited with {process.returncode}")
            self.processes.pop(name)
            if name.startswith("worker"):
                self.start_worker(name)
            else:
                self.start_beat(name)

    def finished(self) -> bool:
        self.check_alive()
        try:
            return bool(
                self.query(
                    f"""SELECT NOT EXISTS (SELECT 1 FROM enrollments WHERE status = 'active')
                           AND NOT EXISTS (SELECT 1 FROM deliveries WHERE status IN {OPEN})"""
                )
            )
        except psycopg.Error:
            return False

    def sending(self) -> int:
        return int(self.query("SELECT count(*) FROM deliveries WHERE status = 'sending'") or 0)

    def sent(self) -> int:
        return int(self.query("SELECT count(*) FROM deliveries WHERE status = 'sent'") or 0)

    def sink(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.sink_port}/__sink/{route}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)

    def counts(self) -> Counts:
        lessons = {lesson.subject: lesson.number for lesson in self.course.lessons}
        received = Counter(
            (m["to"], lessons.get(m["subject"], m["subject"]))
            for m in self.sink("GET", "messages")["messages"]
        )
        with psycopg.connect(self.url) as db:
            flagged_pairs = {
                (email, lesson)
                for email, lesson in db.execute(
                    """SELECT s.email, d.lesson FROM deliveries d
                       JOIN subscribers s ON s.id = d.subscriber_id
                       WHERE d.possible_duplicate"""
                )
            }
        expected = self.subscribers * len(self.course.lessons)
        duplicated = {pair: n - 1 for pair, n in received.items() if n > 1}
        return Counts(
            expected=expected,
            delivered=len(received),
            lost=expected - len(received),
            duplicates=sum(duplicated.values()),
            unflagged_duplicates=sum(
                n for pair, n in duplicated.items() if pair not in flagged_pairs
            ),
            flagged=len(flagged_pairs),
        )

    def batch_size(self) -> int:
        from drip.config import load_settings

        return int(load_settings(self.env).batch_size)


def now() -> datetime:
    return datetime.now(UTC)
