"""FastAPI dependencies: typed handles on the app instance's components (no module globals)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from api.consumer import ResultConsumer
from api.errors import ApiError
from api.labels import ModelLabels
from api.metrics import ApiMetrics
from api.monitoring import MonitoringProvider
from api.publisher import Publisher
from api.state import ApiState
from api.store import ResultStore
from api.waiters import Waiters
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


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ResultStore, Depends(get_store)]
ProducerDep = Annotated[Publisher, Depends(get_producer)]
ConsumerDep = Annotated[ResultConsumer, Depends(get_consumer)]
WaitersDep = Annotated[Waiters, Depends(get_waiters)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
LabelsDep = Annotated[ModelLabels, Depends(get_labels)]
MonitoringDep = Annotated[MonitoringProvider, Depends(get_monitoring)]

# A plain optional header, not an OpenAPI security scheme: the key is only required when the
# server has one configured, and the schema should say exactly that.
ApiKeyHeader = Annotated[
    str | None,
    Header(alias="X-API-Key", description="Required when the server is configured with api.api_key."),
]


def require_api_key(settings: SettingsDep, key: ApiKeyHeader = None) -> None:
    expected = settings.api.api_key
    if expected is None:
        return
    if key is None or not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise ApiError(401, "unauthorized", "a valid X-API-Key header is required")


WriteAccess = Depends(require_api_key)
