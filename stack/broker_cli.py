"""`pawstream broker`: run the local broker in the foreground until a signal arrives."""

from __future__ import annotations

import logging
import signal
import threading

from rich.console import Console

from pawstream.broker import LocalBroker
from pawstream.settings import Settings

logger = logging.getLogger(__name__)


def run_broker(settings: Settings, port: int | None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    b = settings.broker
    with LocalBroker(b.host, port or b.port, b.storage, b.start_timeout_s):
        Console(stderr=True).print(
            f"[green]broker ready[/] on [bold]{b.host}:{port or b.port}[/] "
            f"(storage {b.storage}; memory storage is lost on restart). Ctrl-C stops it."
        )
        stop.wait()
