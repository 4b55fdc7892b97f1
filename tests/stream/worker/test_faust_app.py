"""The worker's Faust app takes its producer configuration from Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pawstream import faust_transport
from pawstream.settings import KafkaSettings, Settings, WorkerSettings
from stream.worker.faust_app import create_app


def _app_settings(tmp_path: Path, *, idempotent: bool) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", idempotent_producer=idempotent),
        worker=WorkerSettings(data_dir=tmp_path / "faust"),
    )


@pytest.mark.parametrize("idempotent", [True, False])
async def test_idempotent_producer_setting_reaches_faust(tmp_path: Path, idempotent: bool) -> None:
    app = create_app(_app_settings(tmp_path, idempotent=idempotent))
    producer = app.producer
    assert isinstance(producer, faust_transport.Producer)
    assert producer._settings_extra()["enable_idempotence"] is idempotent
    # The aiokafka producer Faust would start (built, not started: no broker needed).
    client = producer._new_producer()
    try:
        assert (client._txn_manager is not None) is idempotent
    finally:
        await client.stop()
    assert app.conf.producer_acks == -1  # idempotence needs acks=all
