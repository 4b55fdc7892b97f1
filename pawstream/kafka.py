"""Kafka client configuration, built from KafkaSettings for every client pawstream opens.

All producers and consumers get their connection and security settings here, so SASL/TLS set
in Settings reaches every client (aiokafka, Faust, and confluent-kafka in interop tests).
"""

from __future__ import annotations

import ssl
from typing import Any

from pawstream.settings import KafkaSettings


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        ctx.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
    return ctx


def aiokafka_common(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection kwargs shared by AIOKafkaProducer, AIOKafkaConsumer and the admin client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": int(kafka.request_timeout_s * 1000),
    }
    ctx = ssl_context(kafka)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if kafka.sasl_mechanism:
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    return kwargs


def producer_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    # acks="all": an acknowledged image is on every in-sync replica. Idempotence is optional
    # because Tansu does not implement InitProducerId; delivery is at-least-once either way.
    return {
        **aiokafka_common(kafka),
        "acks": "all",
        "enable_idempotence": kafka.idempotent_producer,
        "max_request_size": kafka.max_request_bytes,
        "linger_ms": 5,
    }


def consumer_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    return {
        **aiokafka_common(kafka),
        "fetch_max_bytes": kafka.fetch_max_bytes,
        "max_partition_fetch_bytes": kafka.max_request_bytes,
        "session_timeout_ms": int(kafka.session_timeout_s * 1000),
        "heartbeat_interval_ms": int(kafka.heartbeat_interval_s * 1000),
    }


def faust_broker_url(kafka: KafkaSettings) -> str:
    return ";".join(f"kafka://{hp.strip()}" for hp in kafka.bootstrap_servers.split(",") if hp.strip())


def faust_credentials(kafka: KafkaSettings) -> Any:
    import faust

    ctx = ssl_context(kafka)
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username or "",
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def confluent_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka-style config for independent clients (interop tests, tooling)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username or ""
        conf["sasl.password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    if kafka.ssl_cafile:
        conf["ssl.ca.location"] = str(kafka.ssl_cafile)
    if kafka.ssl_certfile:
        conf["ssl.certificate.location"] = str(kafka.ssl_certfile)
    if kafka.ssl_keyfile:
        conf["ssl.key.location"] = str(kafka.ssl_keyfile)
    return conf


def faust_app(settings: Any, app_id: str, **overrides: Any) -> Any:
    """A Faust app with pawstream's broker settings; the worker and the monitor both use it.

    ``settings`` is pawstream.settings.Settings (typed loosely to keep faust out of this module's
    import). ``overrides`` add or replace Faust settings for one app.
    """
    import faust

    k, w = settings.kafka, settings.worker
    (w.data_dir / app_id).mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    conf: dict[str, Any] = {
        "broker": faust_broker_url(k),
        "broker_credentials": faust_credentials(k),
        "store": "memory://",
        "datadir": str(w.data_dir / app_id),
        "key_serializer": "raw",
        "value_serializer": "raw",
        # Tansu holds a new group's first JoinGroup for session_timeout/2: keep it short.
        "broker_session_timeout": k.session_timeout_s,
        "broker_heartbeat_interval": k.heartbeat_interval_s,
        "broker_request_timeout": k.request_timeout_s,
        "broker_commit_interval": w.commit_interval_s,
        "producer_acks": -1,
        "producer_max_request_size": k.max_request_bytes,
        "consumer_max_fetch_size": k.max_request_bytes,
        "consumer_auto_offset_reset": "earliest",
        "topic_partitions": settings.topics.output_partitions,
        "topic_replication_factor": settings.topics.replication_factor,
        "web_enabled": False,
        **overrides,
    }
    app = faust.App(app_id, **conf)
    from pawstream import faust_transport

    # Faust has no producer setting for idempotence: its transport's producer takes it from here.
    app.transport = faust_transport.transport(app, enable_idempotence=k.idempotent_producer)
    return app
