"""`pawstream api`: serve create_app(settings) with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from api.monitor_provider import MonitoringProvider
from pawstream.settings import Settings
from pawstream.vision.registry import RegistryError, resolve_model

logger = logging.getLogger(__name__)


def monitoring_provider(settings: Settings) -> MonitoringProvider:
    """The monitor's figures, read from its metrics endpoint (reports "unavailable" if it is down)."""
    from api.monitor_provider import MonitorMetricsProvider

    if settings.api.monitoring_url:
        return MonitorMetricsProvider(settings.api.monitoring_url)
    return MonitorMetricsProvider.from_settings(settings)


def run_api(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    try:
        settings = resolve_model(settings)  # feedback labels come from the served artifact
    except RegistryError as exc:
        logger.critical(str(exc))
        return 2
    config = uvicorn.Config(
        create_app(settings, monitoring=monitoring_provider(settings)),
        host=host or settings.api.host,
        port=port or settings.api.port,
        lifespan="on",
        log_config=None,  # keep pawstream's (JSON) logging setup
        # Open ?wait requests would otherwise hold a shutdown for up to api.wait_max_s.
        timeout_graceful_shutdown=3,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
