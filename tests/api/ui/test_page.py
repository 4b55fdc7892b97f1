"""The labelling page in real headless Chromium at a 390 px viewport, against a real broker, a real
`pawstream worker`, `pawstream monitor` and `pawstream api`: it loads, an uploaded photo shows its
prediction, a correction click puts a FeedbackEvent on the feedback topic (read here by a Kafka
reader), and the accuracy panel follows, both the API's own count and the monitor's cumulative
accuracy; the page logs no console error and never scrolls sideways."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pawstream.broker import free_port
from pawstream.processes import stop_process
from pawstream.settings import Settings
from tests.support.api import api_process, with_api
from tests.support.browser import PHONE_WIDTH, console_errors, set_viewport
from tests.support.events import prediction, send_results
from tests.support.images import jpeg_bytes, real_photos
from tests.support.kafka import TopicReader
from tests.support.monitors import start_monitor
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


def with_monitor(settings: Settings) -> Settings:
    """``settings`` with a monitor on a free metrics port (its own app id, no drift profile), and
    the API reading that monitor."""
    port = free_port()
    monitoring = settings.monitoring.model_copy(
        update={
            "app_id": settings.worker.app_id.replace("-worker", "-monitor"),
            "metrics_port": port,
            "reference_path": None,
        }
    )
    return with_api(
        settings.model_copy(update={"monitoring": monitoring}),
        monitoring_url=f"http://127.0.0.1:{port}/metrics",
    )


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


@pytest.mark.timeout(240)
def test_upload_correct_and_see_the_accuracy_panel_follow(
    api_settings: Settings, chromium: Any, tmp_path: Path
) -> None:
    settings = with_monitor(with_api(api_settings, wait_max_s=90.0))
    photos = real_photos(2)
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(photos[0].read_bytes() if photos else jpeg_bytes(11, (320, 240)))
    warm = photos[1].read_bytes() if len(photos) > 1 else jpeg_bytes(12, (320, 240))
    driver = chromium
    # Started first, so it reads every prediction (fresh topics) while the worker starts.
    monitor = start_monitor(settings, tmp_path / "monitor.log")
    try:
        _page_flow(settings, driver, upload, warm, tmp_path, monitor)
    finally:
        stop_process(monitor, 30)


def _monitor_log(tmp_path: Path) -> str:
    return (tmp_path / "monitor.log").read_text(errors="replace")[-3000:]


def _page_flow(
    settings: Settings, driver: Any, upload: Path, warm: bytes, tmp_path: Path, monitor: Any
) -> None:
    from selenium.webdriver.common.by import By

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
        # The monitor is read (not "unavailable"), and no label has reached it yet.
        before = eventually(
            lambda: _text(driver, "acc-cumulative"),
            30,
            until=lambda text: text not in ("\u2013", "unavailable"),  # en dash: not filled yet
            message="the monitor's figures on the page",
        )
        assert monitor.poll() is None, _monitor_log(tmp_path)
        assert "of 1 labelled" not in before, before

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
        version = row.text.split("· model ")[1].split(" ")[0]  # the served prediction's version
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
        # The monitor joined the label with the served prediction: its cumulative accuracy for the
        # serving version is 0 of 1, and the page shows it (the monitor and the page both poll).
        after = eventually(
            lambda: _text(driver, "acc-cumulative"),
            45,
            until=lambda text: f"champion v{version}: 0.0% of 1 labelled" in text,
            message=lambda: (
                f"the monitor's cumulative accuracy to count the correction ({_monitor_log(tmp_path)})"
            ),
        )
        assert after != before
        # The uploaded photo is its own thumbnail.
        assert row.find_element(By.CSS_SELECTOR, "img").get_attribute("src").startswith("blob:")
        elapsed = time.monotonic() - started

        # Works at 390 px: nothing is wider than the viewport.
        assert driver.execute_script("return document.documentElement.scrollWidth") <= PHONE_WIDTH
        # The whole page in the screenshot, and no empty space below it.
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        set_viewport(driver, PHONE_WIDTH, min(max(height, 600), 3000))
        driver.save_screenshot(str(tmp_path / "ui.png"))
        errors = console_errors(driver)
        assert errors == [], errors
    logger.info("page: load, upload and correction in %.1fs", elapsed)


@pytest.mark.timeout(120)
def test_keys_on_the_key_is_asked_kept_and_a_label_without_it_is_queued(
    api_settings: Settings, chromium: Any, tmp_path: Path
) -> None:
    """Keys on, no worker (a prediction published as a worker would): the page asks for the key,
    keeps it in sessionStorage, fetches the thumbnail with it; a label clicked once the key is gone
    is queued (shown as such), not dropped, and sent when the key is given again."""
    from selenium.webdriver.common.by import By

    settings = with_api(api_settings, api_key="k3y-for-the-page")
    key = {"X-API-Key": "k3y-for-the-page"}
    driver = chromium
    with api_process(settings, tmp_path / "api.log") as base:
        files = {"file": ("p.jpg", jpeg_bytes(21, (320, 240)), "image/jpeg")}
        r = httpx.post(f"{base}/v1/images", files=files, headers=key, timeout=20)
        assert r.status_code == 202, r.text
        image_id = r.json()["id"]
        asyncio.run(send_results(settings, prediction(image_id, "cat", 0.7)))

        started = time.monotonic()
        driver.get(f"{base}/ui")
        key_box = driver.find_element(By.ID, "key-box")
        assert key_box.is_displayed()

        def give_key() -> None:
            driver.find_element(By.ID, "key-input").send_keys("k3y-for-the-page")
            driver.find_element(By.CSS_SELECTOR, "#key-form button, #key-form input[type=submit]").click()

        give_key()
        stored = driver.execute_script("return sessionStorage.getItem('pawstream-api-key')")
        assert stored == "k3y-for-the-page" and not key_box.is_displayed()
        row = f"#recent li.row[data-id='{image_id}']"
        # /ui/thumbs needs the key: a blob: image means the page fetched it with the key.
        eventually(
            lambda: driver.find_elements(By.CSS_SELECTOR, f"{row} img[src^='blob:']"),
            20,
            message="the thumbnail fetched with the key",
        )

        driver.execute_script("sessionStorage.removeItem('pawstream-api-key')")  # the session lost it
        driver.find_element(By.CSS_SELECTOR, f"{row} button.correct[data-label='dog']").click()
        queued = eventually(
            lambda: driver.find_elements(By.CSS_SELECTOR, f"{row} .queued-label"),
            10,
            message="the label shown as queued",
        )
        assert "dog" in queued[0].text
        eventually(key_box.is_displayed, 10, message="the key asked for again")
        give_key()
        event = asyncio.run(_feedback_for(settings, image_id, 20))
        assert (event["type"], event["label"]) == ("feedback", "dog")
        eventually(
            lambda: driver.find_elements(By.CSS_SELECTOR, f"{row} .done-label"),
            20,
            until=lambda found: found and found[0].text == "labelled dog",
            message="the row showing the label as given",
        )
        errors = [e for e in console_errors(driver) if "401" not in e.get("message", "")]
        assert errors == [], errors
    logger.info("page with keys on: key, thumbnail, queued label in %.1fs", time.monotonic() - started)
