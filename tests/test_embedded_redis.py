"""`drip run`'s own Redis starts from a relative var/ folder, as on a fresh clone."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from drip.cli.embedded_redis import EmbeddedRedis


def test_it_starts_from_a_relative_folder_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    server = EmbeddedRedis(Path("var") / "redis")
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
        assert (tmp_path / "var" / "redis" / "redis.log").exists()
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None
