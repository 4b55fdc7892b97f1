"""What ``GET /v1/monitoring`` serves: a :class:`MonitoringProvider`'s summary.

``pawstream api`` passes ``create_app(settings, monitoring=...)`` the monitor's figures
(api/monitor_provider.py, read from its metrics endpoint); an app built without a provider
answers with :class:`PlaceholderMonitoring`.
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
