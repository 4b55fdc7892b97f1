"""Lookups (unknown, pending, done, failed) and ?wait, against the real broker and SQLite."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from pawstream.settings import Settings
from tests.support.api import serve
from tests.support.events import dead_letter, prediction, send_results
from tests.support.images import jpeg_bytes
from tests.support.kafka import TopicReader
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration


async def upload(client: httpx.AsyncClient, seed: int = 0, wait: float | None = None) -> httpx.Response:
    url = "/v1/images" if wait is None else f"/v1/images?wait={wait}"
    return await client.post(url, files={"file": ("photo.jpg", jpeg_bytes(seed), "image/jpeg")})


async def fake_worker(settings: Settings, n: int = 1, label: str = "dog") -> list[str]:
    """Answer the next ``n`` images on the images topic with predictions, as a worker would."""
    async with TopicReader(settings, settings.topics.images) as images:
        await images.wait_until(lambda r: len(r) >= n, 15, f"{n} image events")
        ids = [r["id"] for r in images.records[:n]]
    await send_results(settings, *(prediction(i, label) for i in ids))
    return ids


async def test_unknown_pending_done_and_failed(api_settings: Settings) -> None:
    async with serve(api_settings) as api:
        c = api.client
        r = await c.get("/v1/predictions/never-published")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"

        r = await upload(c)
        assert r.status_code == 202, r.text
        image_id = r.json()["id"]
        assert r.headers["location"] == f"/v1/predictions/{image_id}"
        assert r.json() == {"id": image_id, "status": "pending"}
        r = await c.get(f"/v1/predictions/{image_id}")
        assert (r.status_code, r.json()["status"]) == (202, "pending")

        r2 = await upload(c, seed=1)
        failed_id = r2.json()["id"]
        await send_results(api_settings, prediction(image_id, "cat", 0.8), dead_letter(failed_id))

        r = await c.get(f"/v1/predictions/{image_id}?wait=5")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "done" and body["prediction"]["label"] == "cat"
        assert body["prediction"]["confidence"] == pytest.approx(0.8)
        assert "embedding" not in body["prediction"]
        assert body["prediction"]["latency_s"] > 0

        r = await c.get(f"/v1/predictions/{failed_id}?wait=5")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "failed"
        assert r.json()["error"]["reason"] == "decode"

        # A dead letter never overrides a prediction; a newer prediction (a replay) does.
        await send_results(api_settings, dead_letter(image_id), prediction(image_id, "dog", 0.7))
        await eventually_async(
            lambda: c.get(f"/v1/predictions/{image_id}"),
            10,
            until=lambda r: r.json()["prediction"]["label"] == "dog",
            message="the replayed prediction to be stored",
        )
        assert (await c.get(f"/v1/predictions/{image_id}")).json()["status"] == "done"

        r = await c.get("/v1/predictions/bad%20id")
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


async def test_post_wait_answers_with_the_prediction(api_settings: Settings) -> None:
    async with serve(api_settings) as api:
        start = time.monotonic()
        post = asyncio.create_task(upload(api.client, wait=10))
        ids = await fake_worker(api_settings)
        r = await post
        elapsed = time.monotonic() - start
        assert r.status_code == 200, r.text
        assert r.json()["id"] == ids[0] and r.json()["status"] == "done"
        assert r.json()["prediction"]["label"] == "dog"
        assert r.headers["location"] == f"/v1/predictions/{ids[0]}"
        assert elapsed < 8  # woken by the consumer, not by the wait running out
        assert len(api.state.waiters) == 0

        r = await api.client.get(f"/v1/predictions/{ids[0]}")
        assert r.status_code == 200 and r.json()["prediction"]["label"] == "dog"


async def test_wait_runs_out_with_202(api_settings: Settings) -> None:
    async with serve(api_settings) as api:
        start = time.monotonic()
        r = await upload(api.client, wait=0.3)
        assert r.status_code == 202 and r.json()["status"] == "pending"
        assert 0.3 <= time.monotonic() - start < 3

        # ?wait is capped by settings: wait_max_s is 5 here, so 3600 answers within ~5 s.
        image_id = r.json()["id"]
        get = asyncio.create_task(api.client.get(f"/v1/predictions/{image_id}?wait=3600"))
        # the GET parks on its waiter before the result exists
        await eventually_async(lambda: len(api.state.waiters), 5, message="the GET to park on its waiter")
        assert len(api.state.waiters) == 1
        await send_results(api_settings, prediction(image_id))
        r = await asyncio.wait_for(get, 10)
        assert r.status_code == 200 and r.json()["status"] == "done"
