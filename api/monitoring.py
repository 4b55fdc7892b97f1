"""What ``GET /v1/monitoring`` serves, behind a small interface the monitoring issue plugs into.

Pass a provider to ``create_app(settings, monitoring=...)``; until then a placeholder answers.
"""

from __future__ import annotations

from typing import Any, Protocol


class MonitoringProvider(Protocol):
    async def summary(self) -> dict[str, Any]:
        """A JSON-able summary with at least a ``status`` string (and optionally ``message``)."""
        ...


class PlaceholderMonitoring:
    async def summary(self) -> dict[str, Any]:
        return {
            "status": "not_available",
            "message": (
                "Monitoring is not wired into the API yet: windowed accuracy, latency and drift will "
                "appear here once the monitoring service provides them."
            ),
            "windows": [],
            "alerts": [],
        }
