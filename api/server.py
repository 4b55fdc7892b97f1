"""`pawstream api`: serve create_app(settings) with uvicorn."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from pawstream.settings import Settings


def run_api(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    config = uvicorn.Config(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        lifespan="on",
        log_config=None,  # keep pawstream's (JSON) logging setup
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
