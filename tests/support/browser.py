"""Real headless Chromium for the page tests: Debian's chromium and chromium-driver through Selenium.

No browser is downloaded (Selenium Manager is bypassed by naming the driver): without the system
binaries, or without the selenium package, the fixture skips and says which is missing.
`.ci/run` installs both the way it installs redis-server.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Debian's packages first; then what a GitHub-hosted Ubuntu runner has on PATH (Chrome + chromedriver).
BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
DRIVERS = ("/usr/bin/chromedriver", "chromedriver")
PHONE_WIDTH = 390  # px: the narrow viewport the page must work at


def _first(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        found = name if Path(name).is_absolute() and Path(name).exists() else shutil.which(name)
        if found:
            return found
    return None


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[dev]')"
    if _first(BROWSERS) is None or _first(DRIVERS) is None:
        return "Chromium is absent: apt-get install chromium chromium-driver (Debian) for the browser tests"
    return None


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium WebDriver at a 390 px wide viewport, with the browser console log kept."""
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(_first(BROWSERS))
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=600,1400",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=str(_first(DRIVERS)),
        log_output=str(tmp_path / "chromedriver.log"),
    )
    driver = webdriver.Chrome(options=options, service=service)
    # Headless windows are at least 500 px wide: emulate the phone's viewport instead.
    set_viewport(driver, PHONE_WIDTH, 1400)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The browser console's SEVERE entries since the last call (JS errors, failed loads)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def set_viewport(driver: Any, width: int, height: int) -> None:
    """A ``width`` x ``height`` CSS-pixel mobile viewport (Chrome DevTools device metrics)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )
