"""Rate limiting per API key, or per client address when no key is presented (``api.rate_limit``).

A moving window from the ``limits`` library: every request of a bucket within the last window
counts, so there is no burst at a fixed window's edge. The storage is in-process memory by
default (each replica limits on its own); ``api.rate_limit_storage`` may name a shared one, e.g.
the Redis the result store uses, so replicas share their buckets. A storage that fails lets the
request through (logged): rate limiting protects the service and must never take it down.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from api.errors import ApiError
from api.metrics import ApiMetrics
from pawstream.settings import ApiSettings

logger = logging.getLogger(__name__)


# What an environment variable can say for "no limit" (it cannot carry a JSON null).
_OFF = frozenset({"", "null", "none", "off"})


def parse_rate_limit(text: str | None) -> RateLimitItem | None:
    """``"600/minute"`` -> the limit; None, blank, "null", "none" or "off" -> no limit.

    ValueError (naming the setting) for anything else that is not a limit.
    """
    if text is None or text.strip().lower() in _OFF:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"api.rate_limit {text!r} is not a rate limit like '600/minute': {exc}") from exc


def bucket_for_key(key: str) -> str:
    # A digest, so the secret itself never lands in a shared storage (or its key listing).
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def bucket_for_address(host: str | None) -> str:
    """One bucket per IPv4 address, and per IPv6 /64: one client holds a whole /64 to rotate through."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return f"addr:{host or 'unknown'}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


class RateLimiter:
    """One limit for every bucket; ``check`` raises a 429 ApiError with Retry-After past it."""

    def __init__(self, api: ApiSettings, metrics: ApiMetrics) -> None:
        self.item = parse_rate_limit(api.rate_limit)
        self.metrics = metrics
        self._strategy: MovingWindowRateLimiter | None = None
        if self.item is None:
            return
        uri = api.rate_limit_storage
        options: dict[str, str] = {}
        if uri.startswith(("redis://", "rediss://", "redis+unix://")):
            # redis-py (already a dependency) instead of limits' default coredis client.
            options = {"implementation": "redispy", "key_prefix": f"{api.redis_prefix}ratelimit"}
        storage = storage_from_string(f"async+{uri}", wrap_exceptions=True, **options)
        self._strategy = MovingWindowRateLimiter(storage)

    @property
    def enabled(self) -> bool:
        return self._strategy is not None

    async def check(self, bucket: str, route: str) -> None:
        """Count one request of ``bucket``; raise 429 when it is over the limit.

        ``route`` is the route template (a bounded metric label).
        """
        if self._strategy is None or self.item is None:
            return
        try:
            if await self._strategy.hit(self.item, bucket):
                return
            stats = await self._strategy.get_window_stats(self.item, bucket)
        except StorageError as exc:
            logger.warning("rate limit storage failed; request let through", extra={"error": repr(exc)})
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        self.metrics.rate_limited.labels(route).inc()
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {self.item.amount} requests per {_window(self.item)} exceeded; "
            f"retry in {retry_after}s",
            headers={"Retry-After": str(retry_after)},
        )


def _window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"
