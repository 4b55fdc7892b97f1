"""Client-side correction for brokers whose ListOffsets(LATEST) under-reports the log end.

Tansu 0.6 answers ListOffsets(LATEST) with the newest record batch's base offset + 1 when that
batch holds several records, instead of the log end offset. Fetch responses carry the correct
high watermark, so the correction asks for it with one short fetch per call. Against a real
Kafka the fetch confirms the reported value and nothing changes.

Faust reads changelog end offsets through ``AIOKafkaConsumer.end_offsets`` when recovering
tables; :func:`install` wraps that one method. The worker's entry point calls it explicitly,
so importing this module changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

logger = logging.getLogger(__name__)

_ORIGINAL_ATTR = "_pawstream_original_end_offsets"


def _connection_kwargs(consumer: AIOKafkaConsumer) -> dict[str, Any]:
    # The private client attributes are the only place the consumer keeps its connection config.
    client = consumer._client
    return {
        "bootstrap_servers": client._bootstrap_servers,
        "security_protocol": client._security_protocol,
        "ssl_context": client._ssl_context,
        "sasl_mechanism": client._sasl_mechanism,
        "sasl_plain_username": client._sasl_plain_username,
        "sasl_plain_password": client._sasl_plain_password,
        "request_timeout_ms": client._request_timeout_ms,
    }


async def fetch_high_watermarks(
    connection: dict[str, Any], reported: dict[TopicPartition, int], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """True log-end offsets for ``reported``, read from fetch responses' high watermarks.

    A partition reported at 0 is empty (any record batch would make it at least 1) and is
    taken as is.
    """
    todo = {tp: off for tp, off in reported.items() if off > 0}
    if not todo:
        return dict(reported)
    probe = AIOKafkaConsumer(
        **connection,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=1,  # the broker still returns one whole batch; we only need metadata
    )
    await probe.start()
    try:
        probe.assign(list(todo))
        for tp, off in todo.items():
            probe.seek(tp, off - 1)  # offset off-1 exists, so the fetch cannot be out of range
        deadline = time.monotonic() + timeout_s
        result = dict(reported)
        pending = set(todo)
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fetch response for {sorted(map(str, pending))} in {timeout_s}s")
            await probe.getmany(*pending, timeout_ms=100, max_records=1)
            for tp in list(pending):
                hw = probe.highwater(tp)
                if hw is not None:
                    result[tp] = max(hw, reported[tp])
                    pending.discard(tp)
        return result
    finally:
        await probe.stop()


def install() -> None:
    """Wrap AIOKafkaConsumer.end_offsets with the high-watermark correction (idempotent)."""
    if hasattr(AIOKafkaConsumer, _ORIGINAL_ATTR):
        return
    original: Callable[..., Awaitable[dict[TopicPartition, int]]] = AIOKafkaConsumer.end_offsets
    setattr(AIOKafkaConsumer, _ORIGINAL_ATTR, original)

    async def end_offsets(
        self: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        reported = await original(self, partitions)
        corrected = await fetch_high_watermarks(_connection_kwargs(self), reported)
        changed = {str(tp): (reported[tp], off) for tp, off in corrected.items() if off != reported[tp]}
        if changed:
            logger.info("corrected end offsets from fetch high watermarks", extra={"changed": changed})
        return corrected

    AIOKafkaConsumer.end_offsets = end_offsets


def uninstall() -> None:
    original = getattr(AIOKafkaConsumer, _ORIGINAL_ATTR, None)
    if original is not None:
        AIOKafkaConsumer.end_offsets = original
        delattr(AIOKafkaConsumer, _ORIGINAL_ATTR)


async def end_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Corrected end offsets for callers outside Faust (API catch-up checks, tests, tools)."""
    original = getattr(AIOKafkaConsumer, _ORIGINAL_ATTR, AIOKafkaConsumer.end_offsets)
    reported = await original(consumer, partitions)
    return await fetch_high_watermarks(_connection_kwargs(consumer), reported)


__all__ = ["end_offsets", "fetch_high_watermarks", "install", "uninstall"]
