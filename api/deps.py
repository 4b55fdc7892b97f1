"""FastAPI dependencies: typed handles on the app instance's components (no module globals)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from api.consumer import ResultConsumer
from api.errors import ApiError
from api.labels import ModelLabels
from api.metrics import ApiMetrics, route_label
from api.models_reader import ModelDirectory
from api.monitor_provider import MonitoringProvider
from api.publisher import Publisher
from api.ratelimit import RateLimiter, bucket_for_address, bucket_for_key
from api.state import ApiState
from api.store import ResultStore
from api.waiters import Waiters
from pawstream.references import ReferencePolicy
from pawstream.settings import Settings


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_store(state: StateDep) -> ResultStore:
    return state.store


def get_producer(state: StateDep) -> Publisher:
    return state.publisher


def get_consumer(state: StateDep) -> ResultConsumer:
    return state.consumer


def get_waiters(state: StateDep) -> Waiters:
    return state.waiters


def get_metrics(state: StateDep) -> ApiMetrics:
    return state.metrics


def get_labels(state: StateDep) -> ModelLabels:
    return state.labels


def get_monitoring(state: StateDep) -> MonitoringProvider:
    return state.monitoring


def get_references(state: StateDep) -> ReferencePolicy:
    return state.references


def get_limiter(state: StateDep) -> RateLimiter:
    return state.limiter


def get_models(state: StateDep) -> ModelDirectory:
    return state.models


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ResultStore, Depends(get_store)]
ProducerDep = Annotated[Publisher, Depends(get_producer)]
ConsumerDep = Annotated[ResultConsumer, Depends(get_consumer)]
WaitersDep = Annotated[Waiters, Depends(get_waiters)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
LabelsDep = Annotated[ModelLabels, Depends(get_labels)]
MonitoringDep = Annotated[MonitoringProvider, Depends(get_monitoring)]
ReferencesDep = Annotated[ReferencePolicy, Depends(get_references)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
ModelsDep = Annotated[ModelDirectory, Depends(get_models)]

# A plain optional header, not an OpenAPI security scheme: the key is only required when the
# server has one configured, and the schema should say exactly that.
ApiKeyHeader = Annotated[
    str | None,
    Header(
        alias="X-API-Key",
        description="Required by write operations when the server is configured with api.api_key; "
        "a valid key is also the client's rate-limit bucket (else its address is).",
    ),
]


def valid_api_key(settings: Settings, key: str | None) -> bool:
    expected = settings.api.api_key
    if expected is None or key is None:
        return False
    return secrets.compare_digest(key.encode(), expected.get_secret_value().encode())


def require_api_key(settings: SettingsDep, key: ApiKeyHeader = None) -> None:
    if settings.api.api_key is not None and not valid_api_key(settings, key):
        raise ApiError(401, "unauthorized", "a valid X-API-Key header is required")


async def enforce_rate_limit(
    request: Request, settings: SettingsDep, limiter: LimiterDep, key: ApiKeyHeader = None
) -> None:
    """One request of this client's bucket: its API key when it sent the valid one, else its address.

    Only a valid key names a bucket: counting any key sent would let a client escape the limit
    (and grow the bucket table) by sending a new made-up key with every request.
    """
    if not limiter.enabled:
        return
    if valid_api_key(settings, key):
        bucket = bucket_for_key(key or "")
    else:
        bucket = bucket_for_address(request.client.host if request.client else None)
    await limiter.check(bucket, route_label(request.scope.get("route")))


WriteAccess = Depends(require_api_key)
# After WriteAccess in a route's dependencies, so a refused key is a 401 and never uses up a bucket.
RateLimited = Depends(enforce_rate_limit)
