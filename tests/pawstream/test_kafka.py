"""Kafka security settings reach every kind of client pawstream builds."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from pawstream.kafka import (
    confluent_config,
    consumer_kwargs,
    faust_broker_url,
    faust_credentials,
    producer_kwargs,
)
from pawstream.settings import KafkaSettings, Settings


def test_sasl_ssl_passes_through_to_aiokafka_faust_and_librdkafka() -> None:
    k = KafkaSettings(
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="s3cret",
    )
    for kw in (producer_kwargs(k), consumer_kwargs(k)):
        assert kw["security_protocol"] == "SASL_SSL"
        assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
        assert kw["sasl_plain_username"] == "svc" and kw["sasl_plain_password"] == "s3cret"
        assert isinstance(kw["ssl_context"], ssl.SSLContext)
    creds = faust_credentials(k)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "svc" and creds.password == "s3cret" and creds.ssl_context is not None
    assert faust_broker_url(k) == "kafka://b1:9093;kafka://b2:9093"
    conf = confluent_config(k)
    assert conf["sasl.username"] == "svc" and conf["security.protocol"] == "SASL_SSL"


def test_plaintext_has_no_security_options() -> None:
    k = KafkaSettings(bootstrap_servers="b:9092")
    assert "ssl_context" not in producer_kwargs(k) and "sasl_mechanism" not in consumer_kwargs(k)
    assert faust_credentials(k) is None


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("PAWSTREAM_WORKER__MICRO_BATCH_MAX", "8")
    monkeypatch.setenv("PAWSTREAM_REFS__ALLOWED_ROOTS", f'["{tmp_path}"]')
    s = Settings()
    assert s.kafka.bootstrap_servers == "kafka:9092" and s.worker.micro_batch_max == 8
    assert s.refs.allowed_roots == [tmp_path]


def test_inconsistent_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="session_timeout_s"):
        KafkaSettings(session_timeout_s=60, request_timeout_s=30)
