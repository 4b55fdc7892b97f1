"""The join table whose changelog writes are acknowledged before their source records are acked.

Why: a second way to lose join state across a restart, found while chasing the restart test's
flake (whose root cause is in recovery.py). A Faust table write does not reach the broker when the
agent writes the key: ``Table.__setitem__`` hands the changelog record to the producer's
``ProducerBuffer`` (``send_soon``), a queue that a background task moves into aiokafka one record
at a time. Before committing source offsets Faust calls ``producer.flush()`` (faust-streaming PR
#273, "flushing producer before commit to not have any data loss"), but
``ProducerBuffer.flush_atmost`` (faust/transport/producer.py, 0.15.3)

* returns as soon as one record takes longer than 0.1 s to leave the queue, and
* counts only the records still *in* the queue: the one the background task has taken but not
  yet handed to aiokafka is invisible to this flush and to aiokafka's own ``flush()``.

So the offsets of events whose changelog records have not left that buffer can be committed.
When the monitor stops, ``App.on_stop`` flushes the same way, stops the buffer, and what is still
in it is dropped (a queued record makes the stop crash: "Cannot flush: Producer not Running").
Those events are not redelivered, since their offsets are committed, and the restarted monitor
recovers a table without those keys. With the buffer slowed by 0.15 s a record
(tests/stream/monitor/test_monitor_broker.py) the restart test lost 14 of its 40 pending joins.

The fix does not depend on that flush: :class:`AckedChangelogTable` keeps the delivery future
of every changelog record it sends, and the monitor's agent awaits them (the broker's acks,
``acks=all``) before it asks for the next batch, which is when ``Stream.take_events`` acks the
batch. A source offset is committed only after the join state it produced is on the broker; if
a delivery fails the monitor exits without acking and the batch is read again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import faust
from faust.types import FutureMessage

logger = logging.getLogger(__name__)

EXIT_CHANGELOG_FAILED = 75  # EX_TEMPFAIL: a supervisor restarts the monitor, which re-reads the batch


class AckedChangelogTable(faust.Table):
    """A Faust table that remembers its changelog records until the broker acknowledges them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight: set[FutureMessage] = set()

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> FutureMessage:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self.in_flight.add(fut)
        fut.add_done_callback(self.in_flight.discard)
        return fut

    async def changelog_delivered(self, timeout_s: float) -> None:
        """Until every changelog record sent so far is acknowledged; raises if one failed."""
        pending = list(self.in_flight)
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending), timeout_s)


def exit_unacked(message: str, exc: BaseException) -> None:
    """Stop at once, without acking: a normal shutdown would run take_events' ``finally`` and ack
    the batch whose state did not reach the broker."""
    logger.critical(message, extra={"error": f"{type(exc).__name__}: {exc}"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_CHANGELOG_FAILED)
