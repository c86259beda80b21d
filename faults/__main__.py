"""`make faults`: every fault experiment, a table of what reached the SendGrid stand-in.

    python -m faults                                  # 3,000 subscribers, ten lessons
    python -m faults --subscribers 300 --only sigkill postgres --ctrl-c 3

Each experiment starts its own stack (faults/stack.py), runs the whole course
with a short day, injects its fault and counts. Exit status 1 when a target
is missed: 0 lost, 0 unflagged duplicates, 0 duplicates when PostgreSQL goes
away after a 202, flagged within real duplicates plus one batch per fault,
every fault recovered within 30 s of its end, every Ctrl-C stop clean.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from faults import ctrl_c, scenarios
from faults.scenarios import Config, Outcome

ROOT = Path(__file__).resolve().parent.parent


def table(outcomes: list[Outcome]) -> list[str]:
    lines = [
        "| fault | expected | delivered | lost | duplicates received | unflagged "
        "| flagged | recovery s | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        c = o.counts
        recovery = "never" if o.recovery is None else f"{o.recovery:.1f}"
        if not o.faults:
            recovery = "-"
        verdict = "; ".join(o.misses()) or "met"
        if o.restarts:
            verdict += f" ({len(o.restarts)} restarts: {', '.join(sorted(set(o.restarts)))})"
        lines.append(
            f"| {o.name} | {c.expected:,} | {c.delivered:,} | {c.lost:,} | {c.duplicates:,} "
            f"| {c.unflagged_duplicates:,} | {c.flagged:,} | {recovery} | {verdict} |"
        )
    return lines


def ctrl_c_line(stops: list[ctrl_c.Stop]) -> tuple[str, bool]:
    clean = sum(stop.clean for stop in stops)
    slowest = max((stop.seconds for stop in stops), default=0.0)
    ok = clean == len(stops)
    return (
        f"Ctrl-C of `drip run`: {clean} of {len(stops)} stops left no process and a free "
        f"port (slowest stop {slowest:.1f} s){'' if ok else ' -- TARGET MISSED'}",
        ok,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--day-seconds", type=int, default=15)
    parser.add_argument("--course", type=Path, default=ROOT / "course")
    parser.add_argument("--lease-seconds", type=int, default=20, help="DRIP_SEND_LEASE_SECONDS")
    parser.add_argument("--only", nargs="*", choices=list(scenarios.SCENARIOS), default=None)
    parser.add_argument("--ctrl-c", type=int, default=20, help="Ctrl-C stops of drip run")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "DRIP_FAULTS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="an admin connection; a scratch database is created beside it and dropped",
    )
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="drip-faults-"))
    config = Config(
        work_dir,
        args.postgres,
        args.course,
        args.subscribers,
        args.day_seconds,
        lease_seconds=args.lease_seconds,
    )
    outcomes: list[Outcome] = []
    try:
        for name in args.only if args.only is not None else list(scenarios.SCENARIOS):
            outcomes.append(scenarios.run(name, config, log=_log))
            _log("\n".join(table(outcomes[-1:])))
        stops = ctrl_c.ctrl_c_rounds(work_dir / "ctrl-c", args.ctrl_c) if args.ctrl_c else []
    except BaseException:
        _log(f"faults: failed; the logs stay in {work_dir}")
        raise
    shutil.rmtree(work_dir, ignore_errors=True)
    print(
        f"Command: `python -m faults --subscribers {args.subscribers} --day-seconds "
        f"{args.day_seconds} --lease-seconds {args.lease_seconds}` ({os.cpu_count()} cores)"
    )
    print("\n".join(table(outcomes)))
    ok = all(not o.misses() for o in outcomes)
    if stops:
        line, stops_ok = ctrl_c_line(stops)
        print(line)
        ok = ok and stops_ok
    return 0 if ok else 1


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
