"""`pawstream api` and `pawstream worker` as real processes: upload a photo, wait, get a prediction;
look it up again, also after restarting the API (SQLite store)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from pawstream.settings import Settings
from tests.support.api import api_process, with_api
from tests.support.images import jpeg_bytes, real_photos
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)


def test_upload_a_photo_and_wait_for_its_prediction(api_settings: Settings, tmp_path: Path) -> None:
    settings = with_api(api_settings, wait_max_s=90.0)
    photos = real_photos(1)
    photo = photos[0].read_bytes() if photos else jpeg_bytes(5, (320, 240))
    with running_worker(settings, tmp_path) as worker:
        with api_process(settings, tmp_path / "api-1.log") as base:
            start = time.monotonic()
            # The worker may still be starting: the wait covers its start-up too.
            r = httpx.post(
                f"{base}/v1/images?wait=90", files={"file": ("cat.jpg", photo, "image/jpeg")}, timeout=100
            )
            first = time.monotonic() - start
            assert r.status_code == 200, (r.text, worker.log_tail())
            body = r.json()
            assert body["status"] == "done" and body["prediction"]["label"] in ("cat", "dog")
            image_id = body["id"]

            start = time.monotonic()
            files = {"file": ("b.jpg", jpeg_bytes(9), "image/jpeg")}
            r = httpx.post(f"{base}/v1/images?wait=30", files=files, timeout=40)
            warm = time.monotonic() - start
            assert r.status_code == 200, r.text
            timing = r.json()["prediction"]
            assert timing["worker"] == "worker"

            again = httpx.get(f"{base}/v1/predictions/{image_id}", timeout=5)
            assert again.status_code == 200 and again.json() == body
            metrics = httpx.get(f"{base}/metrics", timeout=5).text
            series = 'pawstream_api_requests_total{method="POST",route="/v1/images",status="200"}'
            assert f"{series} 2.0" in metrics
            # `pawstream api` plugs in the monitor's summary; no monitor runs here, and it says so.
            monitoring = httpx.get(f"{base}/v1/monitoring", timeout=5)
            assert monitoring.status_code == 200 and monitoring.json()["status"] == "unavailable"

        # The worker keeps running; the API restarts and still answers from its SQLite store.
        with api_process(settings, tmp_path / "api-2.log") as base:
            after = httpx.get(f"{base}/v1/predictions/{image_id}", timeout=5)
            assert after.status_code == 200 and after.json() == body
    logger.info(
        "first upload+wait (incl. worker start-up) %.2fs, warm upload+wait %.3fs, "
        "publish->emit %.3fs (batch %d)",
        first,
        warm,
        timing["latency_s"],
        timing["micro_batch_images"],
    )
