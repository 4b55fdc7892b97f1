"""Property-based API testing from the OpenAPI schema (schemathesis), on the real broker and store.

Every operation gets a bounded number of generated requests (valid and invalid). The checks: no
5xx answer, every status code and content type is documented, and bodies and headers match
the documented schemas.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from pawstream.settings import Settings
from tests.support.api import with_api
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.integration,
    # schemathesis' own strategies trigger this hypothesis deprecation; nothing to act on here.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
logger = logging.getLogger(__name__)

# Per operation and generation mode: at least 200 cases each; the whole run takes a few
# minutes on two shared cores (measured in the test's log line).
MAX_EXAMPLES = 200

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
# Invalid requests must be refused with a 4xx we document; 413 (an oversized invalid body) counts.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 413, 415, 422]}}}
)


@pytest.fixture
def api_schema(api_settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    # Short waits: generated ?wait values would otherwise hold requests for up to wait_max_s.
    # The rate limiter stays on (its dependency is part of every limited route) with a limit the
    # run cannot reach: a 429 is documented, but would stop the checks from seeing the route.
    settings = with_api(api_settings, wait_max_s=0.2, rate_limit="1000000/minute")
    app: Any = create_app(settings)
    # Loading the schema starts the app's lifespan on schemathesis' own event-loop thread.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    with asgi.get_client(app) as client:
        eventually(
            lambda: client.get("/readyz"),
            20,
            until=lambda r: r.status_code == 200,
            message="the API to be ready",
        )
    yield schema
    asgi.shutdown_lifespans()


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode) -> int:
    """Run up to MAX_EXAMPLES generated requests against one operation; the number sent."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure as is
    )
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(checks=CHECKS)

    run()
    return sent


def test_api_matches_its_openapi_schema(api_schema: schemathesis.BaseSchema) -> None:
    # Driven through hypothesis directly: schemathesis' lazy pytest loader (from_fixture) breaks
    # on pytest 9 (it reads the removed ``Function._nodeid``).
    failures: dict[str, str] = {}
    counts: dict[str, int] = {}
    start = time.monotonic()
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err would raise here, as it should
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} [{mode.value}]"
            try:
                counts[label] = fuzz(operation, mode)
            except Unsatisfiable:
                # An operation without parameters or body has no invalid requests to make.
                assert mode is GenerationMode.NEGATIVE, label
            except Exception as exc:
                failures[label] = str(exc)[:3000]  # generated bodies can be huge
    elapsed = time.monotonic() - start
    logger.info("schemathesis: %d requests in %.1fs: %s", sum(counts.values()), elapsed, counts)
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    assert len(counts) >= 10  # 7 operations (positive), 3 of them with inputs (negative)
    assert sum(counts.values()) >= 6 * MAX_EXAMPLES
