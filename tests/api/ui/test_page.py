"""The labelling page in real headless Chromium at a 390 px viewport, against a real broker, a real
`pawstream worker` and `pawstream api`: it loads, an uploaded photo shows its prediction, a correction
click puts a FeedbackEvent on the feedback topic (read here by a Kafka reader), and the accuracy panel
follows; the page logs no console error and never scrolls sideways."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pawstream.settings import Settings
from tests.support.api import api_process, with_api
from tests.support.browser import PHONE_WIDTH, console_errors, set_viewport
from tests.support.images import jpeg_bytes, real_photos
from tests.support.kafka import TopicReader
from tests.support.waiting import eventually
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)


async def _feedback_for(settings: Settings, image_id: str, timeout_s: float) -> dict[str, Any]:
    async with TopicReader(settings, settings.topics.feedback) as reader:
        await reader.wait_until(
            lambda records: any(r.get("id") == image_id for r in records), timeout_s, "the FeedbackEvent"
        )
        return next(r for r in reader.records if r.get("id") == image_id)


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


@pytest.mark.timeout(240)
def test_upload_correct_and_see_the_accuracy_panel_follow(
    api_settings: Settings, chromium: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    settings = with_api(api_settings, wait_max_s=90.0)
    photos = real_photos(2)
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(photos[0].read_bytes() if photos else jpeg_bytes(11, (320, 240)))
    warm = photos[1].read_bytes() if len(photos) > 1 else jpeg_bytes(12, (320, 240))
    driver = chromium
    with running_worker(settings, tmp_path) as worker, api_process(settings, tmp_path / "api.log") as base:
        # One image through first: the worker's start-up is not the page's wait.
        r = httpx.post(
            f"{base}/v1/images?wait=90", files={"file": ("w.jpg", warm, "image/jpeg")}, timeout=100
        )
        assert r.status_code == 200, (r.text, worker.log_tail())

        started = time.monotonic()
        driver.get(f"{base}/ui")
        assert "pawstream" in driver.title
        assert driver.execute_script("return window.innerWidth") == PHONE_WIDTH
        # Polled state arrives: the warm-up image is listed with its thumbnail, the panel is filled.
        eventually(
            lambda: driver.find_elements(By.CSS_SELECTOR, "#recent li.row img[src^='blob:']"),
            20,
            message="the recent list with a thumbnail",
        )
        assert _text(driver, "acc-here") == "no labels yet"
        assert "worker(s)" in _text(driver, "serving")

        driver.find_element(By.ID, "upload-file").send_keys(str(upload))
        driver.find_element(By.ID, "upload-button").click()
        row = eventually(
            lambda: driver.find_elements(By.CSS_SELECTOR, "#upload-row"),
            40,
            message="the upload's prediction",
        )[0]
        image_id = row.get_attribute("data-id")
        predicted = row.find_element(By.CSS_SELECTOR, ".label").text
        assert predicted in ("cat", "dog") and image_id
        correction = row.find_element(By.CSS_SELECTOR, "button.correct")
        corrected = correction.get_attribute("data-label")
        assert corrected in ("cat", "dog") and corrected != predicted
        correction.click()

        event = asyncio.run(_feedback_for(settings, image_id, 20))
        assert (event["type"], event["label"]) == ("feedback", corrected)
        # The model was wrong by this label: 0 of 1 right.
        eventually(
            lambda: _text(driver, "acc-here"),
            20,
            until=lambda text: text == "0 of 1 right (0.0%)",
            message="the accuracy panel to count the correction",
        )
        assert "labelled " + corrected in _text(driver, "upload-result")
        elapsed = time.monotonic() - started

        # Works at 390 px: nothing is wider than the viewport.
        assert driver.execute_script("return document.documentElement.scrollWidth") <= PHONE_WIDTH
        set_viewport(driver, PHONE_WIDTH, 1900)  # the whole page in the screenshot
        driver.save_screenshot(str(tmp_path / "ui.png"))
        errors = console_errors(driver)
        assert errors == [], errors
    logger.info("page: load, upload and correction in %.1fs", elapsed)
