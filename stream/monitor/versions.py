"""Records written with a schema version this monitor does not read: counted and logged once.

A newer worker or API may write ``v: 2`` before the monitor is upgraded. Dropping those silently
hides that the monitor's figures stopped covering them; failing on them stops the stream. Each
(topic, version) is counted in ``pawstream_monitor_unknown_schema_versions_total`` and logged at
its first sighting only, so a stream of them cannot flood the log. The version label is bounded:
a short rendering of the value, and past ``max_versions`` distinct ones per topic, "other".
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from pawstream.schemas import UnknownSchemaVersion

logger = logging.getLogger(__name__)

OTHER = "other"
LABEL_MAX_CHARS = 20


class UnknownVersions:
    def __init__(self, counter: Counter, max_versions: int = 16) -> None:
        self.counter = counter
        self.max_versions = max_versions
        self.seen: dict[str, set[str]] = {}  # topic -> version labels already logged

    def record(self, topic: str, exc: UnknownSchemaVersion, offset: int | None = None) -> str:
        """Count one record; returns the version label it was counted under."""
        label = repr(exc.version)[:LABEL_MAX_CHARS]
        seen = self.seen.setdefault(topic, set())
        if label not in seen and len(seen) >= self.max_versions:
            label = OTHER
        if label not in seen:
            seen.add(label)
            logger.warning(
                "skipping records with an unknown schema version (logged once per version)",
                extra={"topic": topic, "version": label, "offset": offset, "error": str(exc)[:200]},
            )
        self.counter.labels(topic, label).inc()
        return label
