"""The session's one real Redis (a plugin registered in tests/conftest.py). Never a mock.

Redis choice, in order: ``PAWSTREAM_TEST_REDIS_URL`` if set (a CI service container, say); else a
``redis-server`` started for the session on a free port in a temporary folder, nothing saved to
disk; else the tests that need Redis skip with the reason and how to get one. Nothing assumes a
Redis on 6379: a machine with no service running (or with that port busy) runs the whole suite.

Each test gets its own key prefix (``redis_prefix``) and ``redis_url`` deletes that prefix's keys
afterwards, so tests sharing the server (or a shared CI Redis) never see each other's keys.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from pawstream.broker import free_port
from pawstream.processes import stop_process
from tests.support.waiting import eventually

logger = logging.getLogger(__name__)

URL_VARIABLE = "PAWSTREAM_TEST_REDIS_URL"
MISSING = f"redis-server not installed: apt-get install redis-server, or set {URL_VARIABLE}"
START_TIMEOUT_S = 20.0
_PORT_ATTEMPTS = 3  # another process may take the free port between our probe and redis's bind


class _Exited(Exception):
    """redis-server ended before answering PING (most likely its port was taken meanwhile)."""


def ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


@contextmanager
def redis_server(directory: Path, binary: str) -> Iterator[str]:
    """``binary`` (a redis-server) on a free 127.0.0.1 port until the block ends; yields its URL.

    Its working folder and log are in ``directory``; persistence is off (no RDB, no AOF), so
    nothing outlives the session.
    """
    log_path = directory / "redis-server.log"
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = free_port()
        # No config file: every setting that matters is on the command line, so a system
        # redis.conf (its port, its persistence) plays no part.
        options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, *options, "--dir", str(directory)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"redis://127.0.0.1:{port}/0"

        def answers(proc: subprocess.Popen[bytes] = proc, url: str = url) -> bool:
            if proc.poll() is not None:
                raise _Exited(f"exit code {proc.returncode}")
            return ping(url)

        try:
            eventually(
                answers,
                START_TIMEOUT_S,
                retry_on=(redis.ConnectionError, redis.TimeoutError),
                message=lambda: f"redis-server to answer PING: {log_path.read_text()[-2000:]}",
            )
        except _Exited:
            if attempt == _PORT_ATTEMPTS:
                tail = log_path.read_text()[-2000:]
                raise AssertionError(f"redis-server would not start: {tail}") from None
            logger.warning("redis-server exited before answering; trying another port", extra={"port": port})
            continue
        except BaseException:
            stop_process(proc, 10.0, group=True)
            raise
        try:
            yield url
        finally:
            stop_process(proc, 10.0, group=True)
        return


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis URL (see the module docstring for where it comes from)."""
    # Read here and only here: the test run's own switch, not a product setting.
    given = os.environ.get(URL_VARIABLE)
    if given:
        eventually(
            lambda: ping(given),
            START_TIMEOUT_S,
            retry_on=(redis.ConnectionError, redis.TimeoutError),
            message=f"the Redis named by {URL_VARIABLE} ({given}) to answer PING",
        )
        logger.info("using Redis from %s", URL_VARIABLE, extra={"url": given})
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(MISSING)
    with redis_server(tmp_path_factory.mktemp("redis"), binary) as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    """A Redis key prefix unique to the test (needs no server: tests of a down Redis use it too)."""
    return f"pawstream-test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def redis_url(redis_server_url: str, redis_prefix: str) -> Iterator[str]:
    """The session's Redis for one test; the keys under ``redis_prefix`` are deleted afterwards."""
    yield redis_server_url
    client = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client.scan_iter(match=f"{redis_prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
