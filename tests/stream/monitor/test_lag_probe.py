"""The monitor's consumer-lag probe closes its clients when they cannot start."""

from __future__ import annotations

import gc
import warnings

import pytest
from aiokafka.errors import KafkaConnectionError

from pawstream.broker import free_port
from pawstream.settings import KafkaSettings, Settings
from stream.monitor.main import LagProbe
from stream.monitor.monitor_metrics import MonitorMetrics


async def test_a_probe_against_no_broker_leaks_no_client() -> None:
    # A free port nobody listens on: the consumer's start fails at once.
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"))
    probe = LagProbe(settings, MonitorMetrics())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            with pytest.raises(KafkaConnectionError):
                await probe.lag()
        gc.collect()  # aiokafka warns from __del__ about a consumer that was never closed
    unclosed = [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    assert not unclosed, unclosed
    await probe.run()  # and the periodic run only logs the failure
