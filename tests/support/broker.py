"""The session's one real broker (a plugin registered in tests/conftest.py). Never a mock.

Broker choice, in order: ``PAWSTREAM_TEST_BOOTSTRAP`` if set; testcontainers Kafka when a Docker
engine answers; otherwise the embedded Tansu broker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

logger = logging.getLogger(__name__)


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    # Read here and only here: the test run's own switch, not a product setting.
    given = os.environ.get("PAWSTREAM_TEST_BOOTSTRAP")
    if given:
        logger.info("using broker from PAWSTREAM_TEST_BOOTSTRAP", extra={"bootstrap": given})
        yield given
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from pawstream.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker.bootstrap
