"""Emails per second through the full path: tick (claim) -> send task (render) -> sink -> recorded.

    python -m bench send                       # the short run `make bench` does
    python -m bench send --subscribers 1000000 # the headline run

Everything is real and on this machine: a scratch PostgreSQL database, Redis,
Celery worker processes, the official sendgrid client and `drip
sendgrid-sink` in its own process. In the same run, the same path with one
email per request and per task gives the baseline the batched path is
compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from drip.cli.embedded_redis import free_port
from drip.config import Settings
from drip.data.db import Database
from drip.data.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "SG.bench-key.local-only"


@dataclass
class Result:
    label: str
    emails: int
    batch_size: int
    tick_s: float
    total_s: float
    requests: int
    send_s: float = 0.0  # with --hold: from the first hand-out after the tick to the last record
    read_not_claimed: int = 0  # deliveries a send task took as the tick claimed them
    cpu: dict[str, float] | None = None  # CPU seconds by part of the run
    cpu_tick: dict[str, float] | None = None  # the same, until the tick was done
    machine: tuple[float, float] | None = None  # every process's busy, and idle, CPU seconds

    @staticmethod
    def summary(cpu: dict[str, float]) -> str:
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
        return f"{sum(cpu.values()):.1f} ({parts})"

    @property
    def rate(self) -> float:
        return self.emails / self.total_s


def create_database(admin_url: str) -> str:
    name = f"drip_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rpartition("/")[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, count: int) -> None:
    """Confirmed subscribers whose lesson 1 is due now, inserted set-based."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("TRUNCATE subscribers, enrollments, deliveries RESTART IDENTITY CASCADE")
        db.execute(
            """INSERT INTO subscribers
                   (email, first_name, timezone, status, created_at, confirmed_at)
               SELECT 'reader' || n || '@bench.example', 'Reader', 'UTC', 'active', now(), now()
               FROM generate_series(1, %s) AS n""",
            (count,),
        )
        db.execute(
            """INSERT INTO enrollments (subscriber_id, course_slug, status, next_lesson,
                                        next_due_at, started_at)
               SELECT id, %s, 'active', 1, now() - interval '1 minute', now() FROM subscribers""",
            (course_slug(),),
        )
        db.execute("ANALYZE")


def course_slug() -> str:
    from drip.course.loader import load_course

    return load_course(ROOT / "course").slug


def sent_count(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()
        return int(row[0]) if row else 0


def read_not_claimed(url: str) -> int:
    """Sent deliveries that still carry the tick's hand-out mark: taken without a claim."""
    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'sent' AND enqueued_at IS NOT NULL"
        ).fetchone()
        return int(row[0]) if row else 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """Busy and idle CPU seconds of all cores since boot (/proc/stat; iowait counts as idle)."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:8]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending += [int(child) for child in children]
    return found


class CpuMeter:
    """CPU seconds used by the parts of a run: this process (the tick), the workers, the
    sink, and the PostgreSQL server processes serving the scratch database's sessions
    (a session that ended before the last reading is missed: read before disposing)."""

    def __init__(self, url: str, workers: list[int], sink: int) -> None:
        self.url, self.workers, self.sink = url, workers, sink
        self.start = self.read()
        self.machine_start = machine_cpu()

    def machine(self) -> tuple[float, float]:
        """The whole machine's busy and idle CPU seconds since the start (every process)."""
        busy, idle = machine_cpu()
        return busy - self.machine_start[0], idle - self.machine_start[1]

    def backends(self) -> list[int]:
        with psycopg.connect(self.url) as db:
            rows = db.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return [int(row[0]) for row in rows]

    def read(self) -> dict[str, dict[int, float]]:
        return {
            "tick": {0: time.process_time()},
            "workers": {p: cpu_seconds(p) for w in self.workers for p in tree_pids(w)},
            "sink": {self.sink: cpu_seconds(self.sink)},
            "postgres": {p: cpu_seconds(p) for p in self.backends()},
        }

    def spent(self) -> dict[str, float]:
        end = self.read()
        return {
            part: sum(seconds - self.start[part].get(pid, 0.0) for pid, seconds in now.items())
            for part, now in end.items()
        }


def sink_stats(sink_url: str) -> dict[str, int]:
    """The sink's counters: requests, and messages (personalizations accepted)."""
    with urllib.request.urlopen(f"{sink_url}/__sink/stats", timeout=5) as answer:
        stats = json.load(answer)
    return {"requests": int(stats["requests"]), "messages": int(stats["messages"])}


def sink_requests(sink_url: str) -> int:
    return sink_stats(sink_url)["requests"]


def wait_for_port(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def environment(
    url: str, redis_url: str, sink_url: str, queue: str, var_dir: Path
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DRIP_DATABASE_URL=url,
        DRIP_REDIS_URL=redis_url,
        DRIP_EMAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY=API_KEY,
        DRIP_SENDGRID_HOST=sink_url,
        DRIP_COURSE_DIR=str(ROOT / "course"),
        DRIP_BASE_URL="https://drip.example",
        DRIP_SECRET_KEY="bench-secret-key-0123456789",
        DRIP_VAR_DIR=str(var_dir),
        DRIP_TASK_QUEUE=queue,
    )
    return env


class MemoryCurve:
    """Worker resident memory sampled as the sends progress, to tell warm-up from growth.

    A sample at the start, one once the first batches are recorded (every worker
    child has imported, connected and rendered by then), then one every ``every``
    sends and one at the end.
    """

    def __init__(self, pids: list[int], every: int, warm_up: int) -> None:
        self.pids = pids
        self.every = every
        self.warm_up = warm_up
        self.samples: list[tuple[str, int, float]] = []
        self._next = 0

    def rss(self) -> float:
        return sum(tree_rss_mb(pid) for pid in self.pids)

    def start(self) -> None:
        self.samples.append(("start", 0, self.rss()))
        self._next = self.warm_up

    def progress(self, sent: int) -> None:
        if self._next and sent >= self._next:
            label = "after warm-up" if self._next == self.warm_up else ""
            self.samples.append((label, sent, self.rss()))
            self._next = (sent // self.every + 1) * self.every

    def end(self, sent: int) -> None:
        self.samples.append(("end", sent, self.rss()))

    def growth(self) -> float:
        """From the sample after warm-up to the end."""
        warm = next((mb for label, _, mb in self.samples if label == "after warm-up"), None)
        if warm is None:
            warm = self.samples[0][2]
        return self.samples[-1][2] - warm


def run_path(
    label: str,
    url: str,
    settings: Settings,
    sink_url: str,
    count: int,
    batch_size: int,
    memory: MemoryCurve | None = None,
    hold: bool = False,
    claim_in_tick: bool = True,
    processes: tuple[list[int], int] | None = None,
    no_pacing: bool = False,
) -> Result:
    from drip.app import create_app
    from drip.sending import dispatch

    try:
        from drip.services import send_queue_length
    except ImportError:  # code from before pacing
        send_queue_length = None  # type: ignore[assignment]
    pacing = send_queue_length is not None and not no_pacing

    seed(url, count)
    app = create_app(settings.with_overrides(batch_size=batch_size))
    services = app.extensions["drip"]
    celery = app.extensions["celery"]
    before = sink_stats(sink_url)
    meter = CpuMeter(url, *processes) if processes else None
    watcher = threading.Thread(
        target=watch, args=(label, sink_url, before["messages"], count, memory), daemon=True
    )
    started = time.perf_counter()
    watcher.start()
    held: list[tuple[list[int], datetime | None]] = []
    with celery.producer_or_acquire() as producer:

        def hand_out(ids: list[int], claimed_at: datetime | None = None) -> None:
            args: list[object] = [ids] if claimed_at is None else [ids, claimed_at.isoformat()]
            celery.send_task("drip.send_batch", args=args, producer=producer)

        def hold_back(ids: list[int], claimed_at: datetime | None = None) -> None:
            held.append((ids, claimed_at))

        # The real tick: it hands each committed chunk to the workers at once,
        # so sending overlaps materializing (unless held back to time the workers alone).
        enqueue = hold_back if hold else hand_out
        tick = dispatch.run_tick(
            services.database,
            services.course,
            now=services.now(),
            day_seconds=settings.day_seconds,
            lease_seconds=settings.lease_seconds,
            batch_size=batch_size,
            enqueue=enqueue,
            # Only when asked for, so that this file also runs code from before the option.
            **({"enqueue_claimed": enqueue} if claim_in_tick else {}),
            # As the tick task paces its hand-outs, unless they are held back (and so
            # that this file also runs code from before pacing).
            **(
                {"waiting": send_queue_length(settings), "pace_seconds": settings.tick_seconds}
                if pacing and not hold
                else {}
            ),
        )
        tick_s = time.perf_counter() - started
        cpu_tick = meter.spent() if meter else None
        sending = time.perf_counter()
        for ids, claimed_at in held:
            hand_out(ids, claimed_at)
    materialized = tick.materialized
    assert materialized == count, (materialized, count)
    watcher.join()
    # Every email is at the sink: now wait for the database to record them all (a count
    # over the whole table, so only now, not while the workers share the cores).
    while (done := sent_count(url)) < count:
        time.sleep(0.1)
    total_s = time.perf_counter() - started
    send_s = time.perf_counter() - sending
    cpu = meter.spent() if meter else None
    machine = meter.machine() if meter else None
    if memory is not None:
        memory.end(done)
    services.database.dispose()
    return Result(
        label,
        count,
        batch_size,
        tick_s,
        total_s,
        sink_requests(sink_url) - before["requests"],
        send_s if hold else 0.0,
        read_not_claimed(url) if claim_in_tick else 0,
        cpu,
        cpu_tick,
        machine,
    )


def watch(
    label: str,
    sink_url: str,
    messages_before: int,
    count: int,
    memory: MemoryCurve | None,
) -> None:
    """Follow the sends at the sink (cheap to ask, unlike counting the deliveries table),
    sampling the workers' memory as they go; returns once every email reached the sink."""
    if memory is not None:
        memory.start()
    progress_at = time.monotonic()
    while (done := sink_stats(sink_url)["messages"] - messages_before) < count:
        if memory is not None:
            memory.progress(done)
        if time.monotonic() - progress_at > 10:
            print(f"  {label}: {done:,}/{count:,} at the sink", file=sys.stderr)
            progress_at = time.monotonic()
        time.sleep(0.2)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (a Celery worker and its pool)."""
    total_kb, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
        pending += [int(child) for child in children]
    return total_kb / 1024


def report(
    results: list[Result],
    args: argparse.Namespace,
    workers: int,
    memory: MemoryCurve | None = None,
) -> str:
    batched, single = results
    lines = [
        f"Command: `python -m bench send --subscribers {args.subscribers} --single {args.single}"
        f" --workers {args.workers} --concurrency {args.concurrency} --rss-every {args.rss_every}"
        f"{' --hold' if args.hold else ''}{' --claim-in-worker' if args.claim_in_worker else ''}"
        f"{' --no-pacing' if args.no_pacing else ''}`"
        f" ({workers} worker processes, "
        f"concurrency {args.concurrency} each, {os.cpu_count()} cores)",
        "",
        "| path | emails | per request | requests | tick s | total s | emails/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.emails:,} | {r.batch_size} | {r.requests:,} | "
            f"{r.tick_s:.2f} | {r.total_s:.2f} | {r.rate:,.0f} |"
        )
    lines += ["", f"Batched / one-per-request: **{batched.rate / single.rate:.0f}x**"]
    lines += [
        "",
        f"Taken by the send task as the tick claimed them (no claiming write): "
        f"{batched.read_not_claimed:,} of {batched.emails:,}",
    ]
    if batched.cpu and batched.cpu_tick:
        lines += [
            "",
            f"CPU seconds, batched run: {batched.summary(batched.cpu)}; "
            f"per 1,000 emails {sum(batched.cpu.values()) / batched.emails * 1000:.2f}; "
            f"until the tick was done {batched.summary(batched.cpu_tick)}",
        ]
    if batched.cpu and batched.machine:
        busy, idle = batched.machine
        ours = sum(batched.cpu.values())
        lines += [
            "",
            f"The machine's cores over the batched run: busy {busy:.1f} s (this run's parts "
            f"{ours:.1f}, everything else {busy - ours:.1f}), idle {idle:.1f} s",
        ]
    if args.hold:
        lines += [
            "",
            "Held until the tick was done (the workers alone, the tick not sharing the cores): "
            f"batched {batched.emails / batched.send_s:,.0f} emails/s "
            f"({batched.send_s:.2f} s), one per request "
            f"{single.emails / single.send_s:,.0f} emails/s ({single.send_s:.2f} s)",
        ]
    if memory:
        lines += [
            "",
            f"Worker resident memory (all {workers} workers with their pool processes), "
            "batched run:",
            "",
            "| sample | sent | RSS MB |",
            "|---|---:|---:|",
        ]
        lines += [f"| {label} | {sent:,} | {mb:,.0f} |" for label, sent, mb in memory.samples]
        lines += [
            "",
            f"Growth after warm-up: **{memory.growth():+,.0f} MB** over {batched.emails:,} sends",
        ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2_000, help="emails sent one per request")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="prefork children per worker")
    parser.add_argument(
        "--hold",
        action="store_true",
        help="hand the batches out only once the tick is done, to time the workers alone",
    )
    parser.add_argument(
        "--claim-in-worker",
        action="store_true",
        help="the tick inserts deliveries queued and each send task claims its batch "
        "(the path before the tick handed batches out already claimed)",
    )
    parser.add_argument(
        "--no-pacing",
        action="store_true",
        help="the tick hands out everything due at once instead of a few chunks ahead of "
        "the workers (the path before pacing)",
    )
    parser.add_argument(
        "--rss-every",
        type=int,
        default=100_000,
        help="sample the workers' resident memory every this many sends",
    )


def main(args: argparse.Namespace) -> str:

    var_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"drip-bench-{secrets.token_hex(3)}"
    var_dir.mkdir(parents=True)
    url = create_database(args.postgres)
    queue = f"drip-bench-{secrets.token_hex(3)}"
    port = free_port()
    sink_url = f"http://127.0.0.1:{port}"
    children: list[subprocess.Popen[bytes]] = []
    try:
        database = Database(url)
        upgrade(database)
        database.dispose()
        env = environment(url, args.redis, sink_url, queue, var_dir)
        drip = shutil.which("drip") or str(Path(sys.executable).parent / "drip")
        sink_command = [drip, "sendgrid-sink", "--port", str(port), "--api-key", API_KEY]
        children.append(subprocess.Popen(sink_command, env=env, stdout=subprocess.DEVNULL))
        for n in range(args.workers):
            command = [sys.executable, "-m", "celery", "-A", "drip.worker:celery", "worker",
                       "--concurrency", str(args.concurrency), "--loglevel", "WARNING",
                       "--without-gossip", "--without-mingle",
                       "--hostname", f"bench{n}@%h"]  # fmt: skip
            children.append(subprocess.Popen(command, env=env))
        wait_for_port(port)
        time.sleep(3)  # let the workers connect to the broker
        from drip.config import load_settings

        settings = load_settings(env)
        worker_pids = [child.pid for child in children[1:]]
        # Warm-up: two batches per worker child recorded.
        warm_up = min(args.subscribers, 2 * 1000 * args.workers * args.concurrency)
        memory = MemoryCurve(worker_pids, args.rss_every, warm_up)
        in_tick = not args.claim_in_worker
        processes = (worker_pids, children[0].pid)
        batched = run_path(
            "batched", url, settings, sink_url, args.subscribers, 1000, memory, args.hold,
            in_tick, processes, args.no_pacing,
        )  # fmt: skip
        single = run_path(
            "one per request",
            url,
            settings,
            sink_url,
            args.single,
            1,
            None,
            args.hold,
            in_tick,
            no_pacing=args.no_pacing,
        )
        return report([batched, single], args, args.workers, memory)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        drop_database(args.postgres, url)
        shutil.rmtree(var_dir, ignore_errors=True)
