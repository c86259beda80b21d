"""The experiments: each starts a fresh stack, runs a course through it, injects one
kind of fault, and counts what reached the SendGrid stand-in."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from drip.sending.journal import TTL_SECONDS
from faults.stack import ANSWER_DELAY, OPEN, Counts, Stack, wait_for

# A fault leaves at most one batch flagged beyond the real duplicates (its lost answer).
ONE_BATCH_PER_FAULT = 1
RECOVERY_TARGET = 30.0


@dataclass
class Config:
    work_dir: Path
    admin_url: str
    course_dir: Path
    subscribers: int
    day_seconds: int
    lease_seconds: int = 30
    postgres_away: float = 30.0
    storm_seconds: float = 20.0
    kills: int = 5


@dataclass
class Outcome:
    name: str
    counts: Counts
    faults: int
    batch_size: int
    recoveries: list[float | None] = field(default_factory=list)
    zero_duplicates: bool = False  # this fault must cause no duplicate at all
    restarts: list[str] = field(default_factory=list)  # processes that exited by themselves

    @property
    def recovery(self) -> float | None:
        """The slowest fault's recovery; None when one never recovered."""
        if not self.recoveries:
            return 0.0
        if any(r is None for r in self.recoveries):
            return None
        return max(r for r in self.recoveries if r is not None)

    def misses(self) -> list[str]:
        c = self.counts
        found = []
        if c.lost:
            found.append(f"{c.lost} lost")
        if c.unflagged_duplicates:
            found.append(f"{c.unflagged_duplicates} unflagged duplicates")
        if self.zero_duplicates and c.duplicates:
            found.append(f"{c.duplicates} duplicates where none may be")
        if c.flagged > c.duplicates + self.faults * ONE_BATCH_PER_FAULT * self.batch_size:
            found.append(f"{c.flagged} flagged > duplicates + one batch per fault")
        if self.recovery is None or self.recovery > RECOVERY_TARGET:
            found.append(f"recovery {self.recovery or 0:.1f} s > {RECOVERY_TARGET:.0f} s")
        return found


class Recoveries:
    """Per fault: seconds from its end until every lesson due or in flight then is out.

    Lessons that fall due after the fault's end are not its delay, so they do
    not count; each fault is watched from its own thread.
    """

    def __init__(self, stack: Stack, timeout: float = 300.0) -> None:
        self.stack = stack
        self.timeout = timeout
        self.results: list[float | None] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def fault_ended(self) -> None:
        ended = time.monotonic()
        pairs = self._delayed()
        thread = threading.Thread(target=self._watch, args=(ended, pairs), daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self) -> list[float | None]:
        for thread in self._threads:
            thread.join(self.timeout + 10)
        return self.results

    def _delayed(self) -> list[tuple[int, int]]:
        def read() -> list[tuple[int, int]]:
            with psycopg.connect(self.stack.url, connect_timeout=5) as db:
                return [
                    (int(e), int(n))
                    for e, n in db.execute(
                        f"""SELECT enrollment_id, lesson FROM deliveries WHERE status IN {OPEN}
                            UNION
                            SELECT id, next_lesson FROM enrollments
                             WHERE status = 'active' AND next_due_at <= now()"""
                    )
                ]

        return wait_for(lambda: _or_none(read), 60, "the database after the fault", 0.5) or []

    def _watch(self, ended: float, pairs: list[tuple[int, int]]) -> None:
        enrollments = [e for e, _ in pairs]
        lessons = [n for _, n in pairs]

        def out() -> bool:
            with psycopg.connect(self.stack.url, connect_timeout=5) as db:
                row = db.execute(
                    f"""SELECT count(*) FROM unnest(%s::int[], %s::int[]) AS p(e, n)
                        JOIN deliveries d ON d.enrollment_id = p.e AND d.lesson = p.n
                        WHERE d.status NOT IN {OPEN}""",
                    (enrollments, lessons),
                ).fetchone()
                return bool(row and row[0] == len(pairs))

        result: float | None = None
        deadline = ended + self.timeout
        while time.monotonic() < deadline:
            if _or_none(out):
                result = time.monotonic() - ended
                break
            time.sleep(0.25)
        with self._lock:
            self.results.append(result)


def _or_none(read: Callable[[], object]) -> object:
    try:
        return read()
    except psycopg.Error:
        return None


def live_sending(stack: Stack) -> bool:
    """A batch claimed (or renewed) or taken as the tick claimed it within the last 3 s:
    a worker is sending right now. (A batch the tick claimed and no worker took yet
    holds a longer lease, of its hand-out: not counted.)"""
    lease = stack_lease(stack)
    fresh = max(lease - 3, 1)
    claimed = stack.query(
        f"""SELECT EXISTS (SELECT 1 FROM deliveries WHERE status = 'sending'
             AND lease_until > now() + interval '{fresh} seconds'
             AND lease_until <= now() + interval '{lease} seconds')"""
    )
    return bool(claimed) or hand_out_just_taken(stack)


def hand_out_just_taken(stack: Stack) -> bool:
    """A send task took a batch the tick claimed within the last 3 s: its journal mark is new."""
    client = redis.Redis(port=stack.redis_port, socket_timeout=2)
    try:
        for key in client.scan_iter(match="drip:journal:*:taken:*", count=1000):
            if int(client.ttl(key)) >= TTL_SECONDS - 3:
                return True
        return False
    except redis.RedisError:
        return False
    finally:
        client.close()


def stack_lease(stack: Stack) -> int:
    return int(stack.env["DRIP_SEND_LEASE_SECONDS"])


def wait_mid_send(stack: Stack, config: Config) -> bool:
    try:
        wait_for(lambda: _or_none(lambda: live_sending(stack)), 3 * config.day_seconds,
                 "a batch being sent", 0.05)  # fmt: skip
        return True
    except TimeoutError:
        return False


def wait_for_202(stack: Stack, timeout: float) -> None:
    before = stack.sink("GET", "stats")["statuses"].get("202", 0)
    wait_for(lambda: stack.sink("GET", "stats")["statuses"].get("202", 0) > before,
             timeout, "a 202 from the sink", 0.01)  # fmt: skip


# -- the faults --------------------------------------------------------------


def worker_sigkill(stack: Stack, config: Config, recoveries: Recoveries) -> int:
    """SIGKILL a worker (its whole process group) while it sends; it restarts at once."""
    kills = 0
    for n in range(config.kills):
        if not wait_mid_send(stack, config):
            break
        time.sleep(random.uniform(0, 0.3))
        victim = f"worker{n % 2 + 1}"
        stack.stop(victim, signal.SIGKILL, grace=0)
        stack.start_worker(victim)  # as `restart: unless-stopped` would
        recoveries.fault_ended()
        kills += 1
        time.sleep(config.day_seconds * 0.8)  # the next kill in a later wave
    return kills


def redis_restart(stack: Stack, config: Config, recoveries: Recoveries) -> int:
    """kill -9 the Redis (no persistence: queue and journal gone), back after 5 s."""
    if not wait_mid_send(stack, config):
        return 0
    stack.stop("redis", signal.SIGKILL, grace=0)
    time.sleep(5)
    stack.start_redis()
    recoveries.fault_ended()
    return 1


def postgres_after_202(stack: Stack, config: Config, recoveries: Recoveries) -> int:
    """The database refuses connections right after SendGrid accepted a batch."""
    wait_for_202(stack, 3 * config.day_seconds)
    refuse_connections(stack, refuse=True)
    time.sleep(config.postgres_away)
    refuse_connections(stack, refuse=False)
    recoveries.fault_ended()
    return 1


def refuse_connections(stack: Stack, *, refuse: bool) -> None:
    with psycopg.connect(stack.admin_url, autocommit=True) as admin:
        allow = "false" if refuse else "true"
        admin.execute(f'ALTER DATABASE "{stack.name}" ALLOW_CONNECTIONS {allow}')
        if refuse:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (stack.name,),
            )


def storm(stack: Stack, config: Config, recoveries: Recoveries) -> int:
    """SendGrid answers 429 to everything, then 500 to everything."""
    if not wait_mid_send(stack, config):
        return 0
    length = config.storm_seconds
    stack.sink("POST", "faults", {"rules": [
        {"status": 429, "after_seconds": 0, "for_seconds": length, "reset_in": 1},
        {"status": 500, "after_seconds": length, "for_seconds": length},
        ANSWER_DELAY,
    ]})  # fmt: skip
    time.sleep(2 * length)
    stack.sink("POST", "faults", {"rules": [ANSWER_DELAY]})
    recoveries.fault_ended()
    return 1


def two_beats(stack: Stack, config: Config, recoveries: Recoveries) -> int:
    """A second beat for the whole course: every tick twice."""
    stack.start_beat("beat2")
    return 0


def deploy_restart(stack: Stack, config: Config, recoveries: Recoveries) -> int:
    """SIGTERM workers and beat mid-send (docker stop: SIGKILL after 10 s), start again."""
    if not wait_mid_send(stack, config):
        return 0
    # docker stop signals the container's main process, not its children: Celery's
    # warm shutdown then lets each pool child finish the batch it holds. (A SIGTERM to
    # the whole group kills the children mid-batch, which is the SIGKILL experiment:
    # those batches wait for their lease.)
    for name in ("worker1", "worker2", "beat"):
        stack.stop(name, signal.SIGTERM, grace=10, group=False)
    for name in ("worker1", "worker2"):
        stack.start_worker(name)
    stack.start_beat("beat")
    recoveries.fault_ended()
    return 1


Fault = Callable[[Stack, Config, Recoveries], int]

SCENARIOS: dict[str, tuple[str, Fault]] = {
    "sigkill": ("worker SIGKILL x{kills} mid-send", worker_sigkill),
    "redis": ("Redis killed, back after 5 s", redis_restart),
    "postgres": ("PostgreSQL away {postgres_away:.0f} s, right after a 202", postgres_after_202),
    "storm": ("SendGrid 429 for {storm_seconds:.0f} s, then 500 for {storm_seconds:.0f} s", storm),
    "beats": ("two beats at once", two_beats),
    "deploy": ("deploy restart (SIGTERM all, start again)", deploy_restart),
}


def run(name: str, config: Config, log: Callable[[str], None] = print) -> Outcome:
    title, fault = SCENARIOS[name]
    stack = Stack(
        config.work_dir / name,
        admin_url=config.admin_url,
        course_dir=config.course_dir,
        subscribers=config.subscribers,
        day_seconds=config.day_seconds,
        lease_seconds=config.lease_seconds,
    )
    try:
        stack.start()
        log(f"faults: {name}: started, {config.subscribers} subscribers")
        recoveries = Recoveries(stack)
        faults = fault(stack, config, recoveries)
        log(f"faults: {name}: {faults} fault(s) injected; waiting for the course to finish")
        lessons = len(stack.course.lessons)
        wait_for(stack.finished, lessons * config.day_seconds + 300, "every lesson out", 1.0)
        return Outcome(
            title.format(**{**vars(config), "kills": faults}),
            stack.counts(),
            faults,
            stack.batch_size(),
            recoveries.wait(),
            zero_duplicates=name == "postgres",
            restarts=stack.restarts,
        )
    finally:
        stack.close()
