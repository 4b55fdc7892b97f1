"""Everything one app instance owns, built by create_app and opened by its lifespan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from api.consumer import ResultConsumer
from api.labels import ModelLabels
from api.metrics import ApiMetrics
from api.models_reader import ModelDirectory
from api.monitor_provider import MonitoringProvider
from api.publisher import Publisher
from api.ratelimit import RateLimiter
from api.recent import RecentActivity
from api.retrain_job import RetrainJob
from api.store import ResultStore
from api.thumbnails import ThumbnailStore
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
    recent: RecentActivity
    thumbnails: ThumbnailStore
    retrain: RetrainJob
    started_at: float = field(default_factory=time.time)
