"""Benchmarks (`make bench`); results go to docs/performance.md with the command that made them."""

from __future__ import annotations

import argparse
import os


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The PostgreSQL server (an admin connection: scratch databases are made beside it)
    and the Redis database every bench part uses."""
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "DRIP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("DRIP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
