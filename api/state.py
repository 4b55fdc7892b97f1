"""Everything one app instance owns, built by create_app and opened by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from api.consumer import ResultConsumer
from api.labels import ModelLabels
from api.metrics import ApiMetrics
from api.models_reader import ModelDirectory
from api.monitor_provider import MonitoringProvider
from api.publisher import Publisher
from api.ratelimit import RateLimiter
from api.store import ResultStore
from api.waiters import Waiters
from pawstream.references import ReferencePolicy
from pawstream.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    store: ResultStore
    publisher: Publisher
    consumer: ResultConsumer
    waiters: Waiters
    metrics: ApiMetrics
    labels: ModelLabels
    monitoring: MonitoringProvider
    references: ReferencePolicy
    limiter: RateLimiter
    models: ModelDirectory
