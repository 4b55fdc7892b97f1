"""API test helpers: an app served in-process (its real lifespan, real broker and stores), or
`pawstream api` as a real process; and the API fixtures (a plugin registered in tests/conftest.py)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.state import ApiState
from pawstream.broker import free_port
from pawstream.processes import stop_process
from pawstream.settings import Settings
from stack.children import service_command, service_env
from tests.support.waiting import eventually, eventually_async


def with_api(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with ``api`` fields changed (validated)."""
    api = type(settings.api).model_validate({**settings.api.model_dump(), **changes})
    return settings.model_copy(update={"api": api})


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Test settings plus a SQLite store in tmp_path and short waits."""
    return with_api(settings, sqlite_path=tmp_path / "results.sqlite3", wait_max_s=5.0, send_timeout_s=5.0)


@pytest.fixture
def redis_settings(api_settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """``api_settings`` with the Redis store on the session's Redis, under the test's key prefix."""
    return with_api(api_settings, store="redis", redis_url=redis_url, redis_prefix=redis_prefix)


@dataclass
class Served:
    client: httpx.AsyncClient
    state: ApiState


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 20.0) -> None:
    await eventually_async(
        lambda: client.get("/readyz"),
        timeout_s,
        until=lambda r: r.status_code == 200,
        message="the API to be ready",
    )


@asynccontextmanager
async def serve(settings: Settings, *, ready: bool = True) -> AsyncIterator[Served]:
    """One app instance with its lifespan running, and an httpx client talking to it over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client:
            if ready:
                await wait_ready(client)
            yield Served(client, app.state.api)


async def result_of(client: httpx.AsyncClient, image_id: str, timeout_s: float = 10.0) -> httpx.Response:
    """GET the id until it is no longer unknown or pending (results arrive asynchronously)."""
    return await eventually_async(
        lambda: client.get(f"/v1/predictions/{image_id}?wait=1"),
        timeout_s,
        interval=0.02,
        until=lambda r: r.status_code not in (404, 202),
        message=f"a result for {image_id}",
    )


@contextmanager
def api_process(settings: Settings, log_path: Path) -> Iterator[str]:
    """`pawstream api` on a free port until the block ends (SIGTERM); yields its base URL."""
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            service_command("api", "--port", str(port)),
            env=service_env(settings),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, f"api exited: {log_path.read_text()[-3000:]}"
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200

    try:
        eventually(
            ready,
            30,
            retry_on=(httpx.TransportError,),
            message=lambda: f"the api to be ready: {log_path.read_text()[-3000:]}",
        )
        yield base
    finally:
        # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 is its normal exit.
        assert stop_process(proc, 15.0) in (0, -signal.SIGTERM), log_path.read_text()[-3000:]
        assert "Application shutdown complete" in log_path.read_text()
