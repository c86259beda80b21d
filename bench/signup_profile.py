"""What one signup costs the web process, in one process: `python -m bench.signup_profile`.

Builds drip's WSGI app as gunicorn does (`drip.wsgi`), on a scratch
PostgreSQL database and on a scratch SQLite file, and calls it with unique
`POST /api/v1/subscribers` requests, one after another on one thread (each
from its own client address through one trusted proxy, the limits in
force). Prints the CPU time of the calling thread per signup, and the same
for the bare Flask app of `bench signups`; ``--cprofile`` adds a listing.
No gunicorn, wrk or threads: the figure is the app's own work, the part of
the web process's CPU that drip's code decides.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench import add_store_arguments
from bench.bare_app import app as bare_app
from bench.send import API_KEY, create_database, drop_database, environment
from drip.config import load_settings
from drip.data.db import Database
from drip.data.migrate import upgrade

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def requests(app: WsgiApp, count: int, run: str) -> list[str]:
    """Send `count` signups to `app`; the statuses answered."""
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc: Any = None) -> None:
        statuses.append(status)

    for n in range(count):
        body = json.dumps({"email": f"p{run}-{n}@bench.example", "first_name": "Pat"}).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/subscribers",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "5000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:5000",
            "wsgi.url_scheme": "http",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_USER_AGENT": "bench",
            "HTTP_X_FORWARDED_FOR": f"2001:db8:{run[:4]}::{n:x}",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for _chunk in app(environ, start_response):
            pass
    return statuses


def cpu_per_request(app: WsgiApp, count: int, warm_up: int) -> float:
    """Milliseconds of this thread's CPU per request, after `warm_up` requests."""
    run = secrets.token_hex(3)
    requests(app, warm_up, run + "w")
    started = time.thread_time()
    statuses = requests(app, count, run)
    spent = time.thread_time() - started
    answered = {s.split()[0] for s in statuses}
    if answered - {"202"}:
        raise SystemExit(f"not every signup was accepted: {sorted(answered)}")
    return spent * 1000 / count


def drip_app(url: str, args: argparse.Namespace, var_dir: Path) -> WsgiApp:
    env = environment(
        url, args.redis, "http://127.0.0.1:9", f"bench-{secrets.token_hex(3)}", var_dir
    )
    env.update(DRIP_TRUSTED_PROXIES="1", DRIP_LOG_JSON="0", SENDGRID_API_KEY=API_KEY)
    os.environ.update(env)
    from drip.app import create_app

    database = Database(url)
    upgrade(database)
    database.dispose()
    return create_app(load_settings(env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_store_arguments(parser)
    parser.add_argument("--signups", type=int, default=3000)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    bare = cpu_per_request(bare_app, args.signups, 500)
    print(f"bare Flask: {bare:.3f} ms CPU a request")
    with tempfile.TemporaryDirectory() as tmp:
        postgres = create_database(args.postgres)
        try:
            for label, url in (("postgresql", postgres), ("sqlite", f"sqlite:///{tmp}/bench.db")):
                app = drip_app(url, args, Path(tmp) / label)
                spent = cpu_per_request(app, args.signups, 300)
                print(f"drip on {label}: {spent:.3f} ms CPU a signup ({spent / bare:.1f}x bare)")
                if args.cprofile:
                    profile = cProfile.Profile(time.thread_time)
                    profile.enable()
                    requests(app, args.signups, secrets.token_hex(3))
                    profile.disable()
                    pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        finally:
            drop_database(args.postgres, postgres)


if __name__ == "__main__":
    main()
