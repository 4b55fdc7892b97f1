"""The test suite's fixtures live in tests/support modules beside their helpers, registered here as
plugins (the only place allowed to declare pytest_plugins); test modules import helpers from
tests/support, never from a conftest or another test module."""

from __future__ import annotations

pytest_plugins = [
    "tests.support.broker",  # kafka_bootstrap: one real broker per session
    "tests.support.artifacts",  # tiny_artifact, mid_artifact, full_artifact
    "tests.support.images",  # image_dir
    "tests.support.settings",  # settings: topics and group unique to each test
    "tests.support.redis_server",  # redis_server_url: one real Redis per session; redis_prefix, redis_url
    "tests.support.api",  # api_settings, redis_settings
    "tests.support.hanging_server",  # hanging_http
    "tests.support.browser",  # chromium: headless Chromium (Selenium, the system driver)
    "tests.support.wire",  # wire: which hosts this process looked up or connected to
    "tests.support.skip_summary",  # closing block: skips grouped by reason, with counts
]
