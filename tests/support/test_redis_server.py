"""The session's Redis: a real server the suite starts itself, on a free port, gone after use."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.support.redis_server import MISSING, URL_VARIABLE, ping, redis_server

SYSTEM_PORT = 6379  # a Redis installed as a service listens here: the suite must not depend on it


def test_the_session_redis_answers_on_its_own_port(redis_server_url: str, redis_url: str) -> None:
    assert ping(redis_url)
    if not os.environ.get(URL_VARIABLE):
        assert urlsplit(redis_server_url).port != SYSTEM_PORT


def test_a_started_server_keeps_nothing_on_disk_and_stops_at_the_end(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(MISSING)
    with redis_server(tmp_path, binary) as url:
        assert urlsplit(url).hostname == "127.0.0.1" and urlsplit(url).port != SYSTEM_PORT
        client = redis.Redis.from_url(url)
        try:
            client.set("k", "v")
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
    with pytest.raises(redis.ConnectionError):
        ping(url)
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("appendonly*"))
