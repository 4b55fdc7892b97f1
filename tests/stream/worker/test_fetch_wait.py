"""stream/worker/fetch_wait.py: the Faust worker consumer's long-poll is capped, and only while installed."""

from __future__ import annotations

from collections.abc import Iterator

import faust
import pytest

from stream.worker import fetch_wait


@pytest.fixture
def app() -> Iterator[faust.App]:
    yield faust.App("fetch-wait-test", broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False)
    fetch_wait.uninstall()


async def test_install_caps_the_worker_consumer_fetch_wait(app: faust.App) -> None:
    thread = app.consumer._thread  # type: ignore[attr-defined]
    # Nothing connects: building an aiokafka consumer is free until start().
    assert thread._create_worker_consumer(app.transport)._fetch_max_wait_ms == 1500  # Faust's own value

    fetch_wait.install(0.05)
    assert thread._create_worker_consumer(app.transport)._fetch_max_wait_ms == 50

    fetch_wait.uninstall()
    assert thread._create_worker_consumer(app.transport)._fetch_max_wait_ms == 1500
