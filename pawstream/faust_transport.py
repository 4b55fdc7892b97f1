"""Faust's Kafka transport with the producer's idempotence taken from Settings.

faust-streaming (0.15.3) has no producer setting for idempotence: its aiokafka producer turns
``enable_idempotence`` on only inside exactly-once transactions, so ``kafka.idempotent_producer``
never reached the worker's producer. This transport's producer passes it explicitly. Imported
lazily by :func:`pawstream.kafka.faust_app` (faust is slow to import).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as driver


class Producer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        idempotent = getattr(self.transport, "enable_idempotence", False)
        # Transactions force it on (Faust's own extra settings win); otherwise Settings decide.
        return {"enable_idempotence": idempotent, **super()._settings_extra()}


class Transport(driver.Transport):
    Producer: ClassVar[Any] = Producer
    enable_idempotence: bool = False


def transport(app: Any, *, enable_idempotence: bool) -> Transport:
    """A transport for ``app``'s consumer brokers (what Faust would build) with idempotence set."""
    t = Transport(app.conf.broker_consumer, app)
    t.enable_idempotence = enable_idempotence
    return t
