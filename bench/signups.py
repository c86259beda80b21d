"""Signups per second through `drip run`'s gunicorn, against a bare Flask app in the same run.

    python -m bench signups                  # both databases, 10 s each
    python -m bench signups --duration 30 --burst 2000

wrk posts unique addresses to `POST /api/v1/subscribers`, first at full
speed (the peak), then paced at half the peak (the latency that matters).
Every accepted signup is then checked for its consent record and its
confirmation email; the time from signup to the email leaving is reported
as the confirmation latency.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text

from bench.send import API_KEY, create_database, drop_database, environment, wait_for_port
from drip.cli.embedded_redis import free_port
from drip.cli.runner import child_commands
from drip.config import load_settings
from drip.data.db import Database
from drip.data.migrate import upgrade
from drip.data.models import Subscriber

LUA = Path(__file__).with_name("signup.lua")
# This bench's own addresses and client addresses: an earlier run's signups count
# against the per-address (3 a day) and per-IP (100 an hour) limits in the same Redis.
SALT = secrets.token_hex(2)
NETS = itertools.count()  # one block of client addresses per wrk run
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
BARE_CPU_MS = [0.0]  # the bare app's CPU per request in this run


@dataclass
class Wrk:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # answers other than 2xx
    socket_errors: int


@dataclass
class Confirmations:
    accepted: int
    consents: int
    sent: int
    p50_s: float
    p95_s: float


@dataclass
class Row:
    label: str
    peak: Wrk
    half: Wrk | None
    confirmations: Confirmations | None
    bare_rate: float
    answers: str = ""
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per answer during the peak
    bare_cpu_ms: float = 0.0


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def parse_wrk(output: str) -> Wrk:
    def find(pattern: str, default: str = "0") -> str:
        match = re.search(pattern, output)
        return match.group(1) if match else default

    return Wrk(
        rate=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"\s50%\s+(\S+)", "0ms")),
        p99_ms=_ms(find(r"\s99%\s+(\S+)", "0ms")),
        requests=int(find(r"(\d+) requests in")),
        errors=int(find(r"Non-2xx or 3xx responses: (\d+)")),
        socket_errors=sum(
            int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
        ),
    )


def wrk(
    port: int,
    args: argparse.Namespace,
    run: str,
    *,
    delay_ms: float = 0,
    limit: int = 0,
    duration: float | None = None,
) -> Wrk:
    env = dict(
        os.environ,
        BENCH_RUN=SALT + run,
        BENCH_NET=f"{SALT}:{next(NETS):x}",
        BENCH_DELAY_MS=f"{delay_ms:.2f}",
        BENCH_LIMIT=str(limit),
    )
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}",
               f"-d{duration or args.duration}s", "--latency", "-s", str(LUA),
               f"http://127.0.0.1:{port}"]  # fmt: skip
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def half_rate(port: int, args: argparse.Namespace, run: str, peak: float) -> Wrk:
    """Paced to about half the peak: each connection waits between its requests."""
    delay_ms = args.connections * 1000 / max(peak / 2, 1)
    return wrk(port, args, run, delay_ms=delay_ms)


def start(
    command: list[str], env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.DEVNULL)


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and all its descendants (Linux /proc)."""
    ticks, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_backends(database_name: str) -> list[int]:
    """The PostgreSQL server processes serving one database (their title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if title.startswith("postgres:") and f" {database_name} " in title:
                found.append(int(entry.name))
    return found


def cpu_use(processes: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """CPU seconds so far of each named group of process trees, per process."""
    return {name: {pid: _tree_cpu_seconds(pid) for pid in pids} for name, pids in processes.items()}


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """What a group used in between; a process gone meanwhile counts what it had used."""
    return sum(after.get(pid) or before.get(pid, 0.0) for pid in before | after) - sum(
        before.values()
    )


def wait_until_settled(children: list[subprocess.Popen[bytes]], timeout: float = 180) -> None:
    """Wait until the started processes (gunicorn's workers, Celery's pool) stop using CPU.

    A listening port only says gunicorn's master is up: on a busy machine its
    workers may import and build the app for many seconds more, and a run
    measured meanwhile measures the start-up.
    """
    deadline = time.monotonic() + timeout
    used = sum(_tree_cpu_seconds(child.pid) for child in children)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = sum(_tree_cpu_seconds(child.pid) for child in children)
        if now - used < 0.05:  # under 5 % of a core for a second: started
            return
        used = now


def statuses(log: Path) -> str:
    """The web access log's answers by status, e.g. "202: 1,830, 500: 12"."""
    counts = Counter(re.findall(r'HTTP/1\.[01]" (\d{3}) ', log.read_text(errors="replace")))
    return ", ".join(f"{code}: {n:,}" for code, n in sorted(counts.items()))


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    children.clear()


def bare(args: argparse.Namespace, env: dict[str, str]) -> Wrk:
    port = free_port()
    command = child_commands(load_settings(env), "127.0.0.1", port)["web"]
    command[-1] = "bench.bare_app:app"
    children = [start(command, dict(env, PYTHONPATH=str(Path(__file__).parent.parent)))]
    try:
        wait_for_port(port)
        wait_until_settled(children)
        wrk(port, args, "warm", duration=2)
        before = _tree_cpu_seconds(children[0].pid)
        measured = wrk(port, args, "bare")
        BARE_CPU_MS[0] = (
            (_tree_cpu_seconds(children[0].pid) - before) * 1000 / max(1, measured.requests)
        )
        return measured
    finally:
        stop(children)


def confirmations(database: Database, run: str, timeout: float) -> Confirmations:
    """Wait for every accepted signup of this run to have its confirmation handed over."""
    pattern = f"p{SALT}{run}-%"
    query = text(
        """SELECT count(*), count(s.confirmation_sent_at),
                  (SELECT count(*) FROM consents c JOIN subscribers t ON t.id = c.subscriber_id
                   WHERE t.email LIKE :pattern)
           FROM subscribers s WHERE s.email LIKE :pattern"""
    )
    deadline = time.monotonic() + timeout
    while True:
        with database.engine.connect() as db:
            accepted, sent, consents = db.execute(query, {"pattern": pattern}).one()
        if sent >= accepted or time.monotonic() > deadline:
            break
        time.sleep(1)
    with database.engine.connect() as db:
        waits = sorted(
            (row[0] - row[1]).total_seconds()
            for row in db.execute(
                select(Subscriber.confirmation_sent_at, Subscriber.created_at).where(
                    Subscriber.email.like(pattern), Subscriber.confirmation_sent_at.is_not(None)
                )
            )
        )

    def pct(p: float) -> float:
        return waits[min(len(waits) - 1, int(p * len(waits)))] if waits else float("nan")

    return Confirmations(accepted, consents, sent, pct(0.5), pct(0.95))


def drip(
    label: str, url: str, args: argparse.Namespace, env: dict[str, str], bare_rate: float
) -> Row:
    database = Database(url)
    upgrade(database)
    env = dict(env, DRIP_DATABASE_URL=url)
    port = free_port()
    commands = child_commands(load_settings(env), "127.0.0.1", port)
    access_log = Path(env["DRIP_VAR_DIR"]) / f"access-{label}.log"
    children = [
        start(command, env, access_log if name == "web" else None)
        for name, command in commands.items()
    ]
    try:
        wait_for_port(port)
        wait_until_settled(children)  # web workers loaded, worker and scheduler connected
        wrk(port, args, f"warm{label}", duration=2)
        processes = {
            "web": [children[0].pid],
            "worker + beat": [child.pid for child in children[1:]],
            "PostgreSQL": _postgres_backends(url.rsplit("/", 1)[-1])
            if label == "postgresql"
            else [],
        }
        before = cpu_use(processes)
        peak = wrk(port, args, f"peak{label}")
        processes["PostgreSQL"] = sorted(
            set(processes["PostgreSQL"])
            | set(_postgres_backends(url.rsplit("/", 1)[-1]) if label == "postgresql" else [])
        )
        used = cpu_use(processes)
        cpu_ms = {
            name: cpu_between(before.get(name, {}), used[name]) * 1000 / max(1, peak.requests)
            for name in processes
        }
        half = half_rate(port, args, f"half{label}", peak.rate)
        sent = None
        if args.burst:
            confirmations(database, f"half{label}", timeout=args.wait)
            per_thread = max(1, args.burst // args.threads)
            wrk(port, args, f"burst{label}", limit=per_thread, duration=60)
            sent = confirmations(database, f"burst{label}", timeout=args.wait)
        return Row(label, peak, half, sent, bare_rate, statuses(access_log), cpu_ms, BARE_CPU_MS[0])
    finally:
        stop(children)
        database.dispose()


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"Command: `python -m bench signups --duration {args.duration} "
        f"--connections {args.connections} --threads {args.threads} --burst {args.burst}` "
        f"(wrk; `drip run`'s gunicorn: 2 workers x 4 threads; {os.cpu_count()} cores)",
        "",
        "| app | bare Flask req/s | req/s | / bare | p50 ms | p99 ms | non-2xx / socket errors "
        "| half-peak req/s | p99 ms | burst accepted | consents | confirmations out "
        "| p50 s | p95 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        half = f"{r.half.rate:,.0f} | {r.half.p99_ms:.1f}" if r.half else "- | -"
        c = r.confirmations
        burst = (
            f"{c.accepted:,} | {c.consents:,} | {c.sent:,} | {c.p50_s:.2f} | {c.p95_s:.2f}"
            if c
            else "- | - | - | - | -"
        )
        lines.append(
            f"| {r.label} | {r.bare_rate:,.0f} | {r.peak.rate:,.0f} | "
            f"{r.peak.rate / r.bare_rate:.2f} | "
            f"{r.peak.p50_ms:.1f} | {r.peak.p99_ms:.1f} | "
            f"{r.peak.errors} / {r.peak.socket_errors} | {half} | {burst} |"
        )
    lines += [
        "",
        "CPU per answered request during the peak, ms (process trees; PostgreSQL: the "
        "server processes of the bench's database; Redis, wrk and the sink not counted):",
        "",
        "| app | web | worker + beat | PostgreSQL | total | bare Flask's web |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        parts = [r.cpu_ms.get(name, 0.0) for name in ("web", "worker + beat", "PostgreSQL")]
        cells = " | ".join(f"{part:.2f}" for part in parts)
        lines.append(f"| {r.label} | {cells} | {sum(parts):.2f} | {r.bare_cpu_ms:.2f} |")
    lines += ["", "Answers by status (all runs):"]
    lines += [f"- {r.label}: {r.answers}" for r in rows]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--burst", type=int, default=2000, help="signups in the burst (0: none)")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for emails")
    parser.add_argument("--databases", default="postgresql,sqlite")


def main(args: argparse.Namespace) -> str:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: `apt-get install wrk` (or `make bench` as root)")
    var_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"drip-signups-{secrets.token_hex(3)}"
    var_dir.mkdir(parents=True)
    sink_port = free_port()
    sink_url = f"http://127.0.0.1:{sink_port}"
    queue = f"drip-bench-{secrets.token_hex(3)}"
    pg_url = create_database(args.postgres)
    env = environment(pg_url, args.redis, sink_url, queue, var_dir)
    # The default limits stay in force: wrk sends each request as another client
    # (X-Forwarded-For, one trusted proxy), as signups from many people would.
    env.update(DRIP_TRUSTED_PROXIES="1", DRIP_LOG_JSON="0")
    drip_command = shutil.which("drip") or str(Path(sys.executable).parent / "drip")
    sink = start([drip_command, "sendgrid-sink", "--port", str(sink_port), "--api-key", API_KEY],
                 env)  # fmt: skip
    try:
        wait_for_port(sink_port)
        urls = {"postgresql": pg_url, "sqlite": f"sqlite:///{var_dir}/drip.sqlite3"}
        # The bare app right before each drip run: on a shared machine the load
        # changes within minutes, and a ratio is only fair between neighbours.
        rows = [
            drip(name, urls[name], args, env, bare(args, env).rate)
            for name in args.databases.split(",")
        ]
        return report(rows, args)
    finally:
        stop([sink])
        drop_database(args.postgres, pg_url)
        shutil.rmtree(var_dir, ignore_errors=True)
