"""Seek source partitions to their committed offsets *before* Faust resumes fetching them.

Root cause of the flaky ``test_join_state_survives_a_monitor_restart``. After a rebalance, an
app with tables finishes table recovery in ``Recovery.on_recovery_completed``
(faust-streaming 0.15.3, faust/tables/recovery.py), which does, in this order:

1. ``consumer.resume_partitions(source partitions)``; the fetcher is already running (it read
   the changelogs) and flow control is already active;
2. ``await consumer.perform_seek()``: reads the committed offsets from the broker and resets
   both the fetch positions and Faust's per-partition read offsets (``Consumer._read_offset``).

Records already waiting on the source topics are fetched and handed to the agent during the
round trip of step 2. The seek then resets the read offset under the running drain loop
(``Consumer._drain_messages``), whose bookkeeping (read offset, gap detection) is then off: in a
run logged record by record, feedback partition 0 delivered offsets 8-17 before the seek, 18
after it, then 28-34; offsets 19-27 never reached the agent. Never acked, they stalled the
monitor's commits ("monitor did not catch up"); once a later gap is marked acked they are
committed unprocessed: a late label lost (a window of 39 pairs instead of 40) or a redelivered
prediction never seen (29 duplicates instead of 30). Upstream fixed the same ordering for apps
without tables (faust-streaming PR #217, ``Recovery._resume_streams``), not this path. The restart
test hits it because the second monitor finds its inputs already waiting when it finishes recovery.

:func:`install` wraps ``on_recovery_completed`` so that step 1 is deferred until step 2 has
finished: nothing is fetched from a source partition before its position and read offset are
the committed ones. Keep this in one module, like pawstream/offsets.py; it does nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.tables.recovery import Recovery

logger = logging.getLogger(__name__)

_ORIGINAL_ATTR = "_pawstream_original_on_recovery_completed"


def install() -> None:
    """Make Recovery.on_recovery_completed seek before it resumes source partitions (idempotent)."""
    if hasattr(Recovery, _ORIGINAL_ATTR):
        return
    original: Callable[..., Awaitable[None]] = Recovery.on_recovery_completed
    setattr(Recovery, _ORIGINAL_ATTR, original)

    async def on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
        consumer: Any = self.app.consumer
        resume = consumer.resume_partitions
        seek = consumer.perform_seek
        deferred: list[set[Any]] = []

        def release() -> None:
            while deferred:
                resume(deferred.pop(0))

        def resume_after_seek(tps: Iterable[Any]) -> None:
            deferred.append(set(tps))

        async def seek_then_resume() -> None:
            try:
                await seek()
            finally:
                release()

        # Instance attributes shadow the consumer's methods for this call only.
        consumer.resume_partitions = resume_after_seek
        consumer.perform_seek = seek_then_resume
        try:
            await original(self, generation_id)
        finally:
            del consumer.resume_partitions
            del consumer.perform_seek
            release()  # no seek happened (empty assignment, or the call failed): resume as Faust would

    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]


def uninstall() -> None:
    original = getattr(Recovery, _ORIGINAL_ATTR, None)
    if original is not None:
        Recovery.on_recovery_completed = original  # type: ignore[method-assign]
        delattr(Recovery, _ORIGINAL_ATTR)


__all__ = ["install", "uninstall"]
