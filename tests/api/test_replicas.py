"""Several API instances: a shared Redis store, and waiters on every replica (each reads all
partitions). Restart: the SQLite store resumes from its stored offsets instead of re-reading."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from pawstream.settings import Settings
from tests.support.api import result_of, serve
from tests.support.events import prediction, send_results
from tests.support.images import jpeg_bytes
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration


async def test_two_replicas_share_results_and_wake_their_own_waiters(redis_settings: Settings) -> None:
    async with serve(redis_settings) as a, serve(redis_settings) as b:
        files = {"file": ("a.jpg", jpeg_bytes(7), "image/jpeg")}
        r = await a.client.post("/v1/images", files=files)
        assert r.status_code == 202
        image_id = r.json()["id"]
        # B never saw the upload, yet knows it is pending: the store is shared.
        r = await b.client.get(f"/v1/predictions/{image_id}")
        assert r.status_code == 202 and r.json()["status"] == "pending"

        waits = [
            asyncio.create_task(a.client.get(f"/v1/predictions/{image_id}?wait=5")),
            asyncio.create_task(b.client.get(f"/v1/predictions/{image_id}?wait=5")),
        ]
        await eventually_async(  # both parked before the result exists
            lambda: len(a.state.waiters) + len(b.state.waiters),
            5,
            interval=0.01,
            until=lambda parked: parked >= 2,
            message="both GETs to park on their waiters",
        )

        # Results spread over every partition; each replica must see each one.
        others = [f"other-{i}" for i in range(12)]
        start = time.monotonic()
        await send_results(redis_settings, prediction(image_id, "dog"), *(prediction(i) for i in others))
        ra, rb = await asyncio.wait_for(asyncio.gather(*waits), 10)
        woke = time.monotonic() - start
        assert ra.status_code == rb.status_code == 200
        assert ra.json() == rb.json() and ra.json()["prediction"]["label"] == "dog"
        assert woke < 3

        for other in others:
            for replica in (a, b):
                r = await result_of(replica.client, other)
                assert r.status_code == 200, (other, r.text)
        # With a shared store a lookup may be served by the other replica's write: check directly
        # that each replica's own consumer read every record (all partitions).
        await eventually_async(
            lambda: min(a.state.consumer.records_read, b.state.consumer.records_read),
            10,
            interval=0.02,
            until=lambda read: read >= 13,
            message="each replica to read every partition (13 records)",
        )
        assert len(a.state.consumer.partitions) == 2 * redis_settings.topics.output_partitions


async def test_restart_resumes_from_stored_offsets(api_settings: Settings) -> None:
    first = [f"before-{i}" for i in range(6)]
    later = [f"after-{i}" for i in range(4)]
    async with serve(api_settings) as api:
        await send_results(api_settings, *(prediction(i) for i in first))
        for image_id in first:
            assert (await result_of(api.client, image_id)).status_code == 200
        assert api.state.consumer.records_read == len(first)

    # While the API is down, more results arrive.
    await send_results(api_settings, *(prediction(i, "dog") for i in later))

    async with serve(api_settings) as api:
        for image_id in first + later:
            r = await result_of(api.client, image_id)
            assert r.status_code == 200 and r.json()["status"] == "done", (image_id, r.text)
        # Only the records produced while it was down were read again.
        assert api.state.consumer.records_read == len(later)

    with sqlite3.connect(api_settings.api.sqlite_path) as db:
        offsets = dict(
            ((t, p), o) for t, p, o in db.execute("SELECT topic, partition, next_offset FROM offsets")
        )
    assert sum(o for (t, _), o in offsets.items() if t == api_settings.topics.predictions) == 10
