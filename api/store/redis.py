"""Redis result store, for several API replicas sharing results. Every key expires after the TTL.

Keys (under the configured prefix): ``r:<id>`` is a hash {status, rank, body}; ``offsets`` is a
hash ``<topic>:<partition>`` -> next offset. Replicas share the offsets: each one reads every
partition and writes the same results, so a restarting replica may resume from where any
replica stopped. An offset written by a replica that is behind only means re-reading records
(results are idempotent); it can never skip one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.store.base import Offsets, ResultStore, Status, StoredResult, StoreUnavailable

# KEYS: result keys, then the offsets hash. ARGV: ttl_ms, n, n x (status, rank, body), then
# (field, offset) pairs. One script = one atomic step for results and offsets.
_APPLY = """
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
for i = 1, n do
  local key = KEYS[i]
  local base = 3 + (i - 1) * 3
  local rank = tonumber(ARGV[base + 1])
  local old = tonumber(redis.call('HGET', key, 'rank') or '-1')
  if rank >= old then
    redis.call('HSET', key, 'status', ARGV[base], 'rank', rank, 'body', ARGV[base + 2])
    redis.call('PEXPIRE', key, ttl)
  end
end
local j = 3 + n * 3
while j < #ARGV do
  redis.call('HSET', KEYS[n + 1], ARGV[j], ARGV[j + 1])
  j = j + 2
end
return n
"""

# Pending only for an id with no entry yet (a result may already have arrived).
_PENDING = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'pending', 'rank', 0)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
  return 1
end
return 0
"""


def _text(value: bytes | str) -> str:
    # The client decodes responses; typing still allows bytes.
    return value.decode() if isinstance(value, bytes) else value


class RedisStore(ResultStore):
    def __init__(self, url: str, *, prefix: str, ttl_s: float, timeout_s: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl_ms = int(ttl_s * 1000)
        self.timeout_s = timeout_s
        self._redis: aioredis.Redis | None = None
        self._apply: Any = None
        self._pending: Any = None

    def _key(self, image_id: str) -> str:
        return f"{self.prefix}r:{image_id}"

    @property
    def _offsets_key(self) -> str:
        return f"{self.prefix}offsets"

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreUnavailable("the Redis store is not open")
        return self._redis

    async def open(self) -> None:
        # The pool connects lazily: an unreachable Redis shows up as 503s and a failing /readyz.
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            decode_responses=True,
        )
        self._apply = self._redis.register_script(_APPLY)
        self._pending = self._redis.register_script(_PENDING)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        try:
            await self._client().ping()
        except RedisError as exc:
            raise StoreUnavailable(f"Redis store error: {exc}") from exc

    async def mark_pending(self, image_id: str) -> None:
        self._client()
        try:
            await self._pending(keys=[self._key(image_id)], args=[self.ttl_ms])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis store error: {exc}") from exc

    async def get(self, image_id: str) -> StoredResult | None:
        try:
            status, body = await self._client().hmget(self._key(image_id), ["status", "body"])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis store error: {exc}") from exc
        if status is None:
            return None
        return StoredResult(image_id, Status(_text(status)), _text(body) if body else None)

    async def apply(self, results: Sequence[StoredResult], offsets: Mapping[tuple[str, int], int]) -> None:
        keys = [self._key(r.id) for r in results] + [self._offsets_key]
        args: list[Any] = [self.ttl_ms, len(results)]
        for r in results:
            args += [r.status.value, r.status.rank, r.body or ""]
        for (topic, part), off in offsets.items():
            args += [f"{topic}:{part}", off]
        self._client()
        try:
            await self._apply(keys=keys, args=args)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis store error: {exc}") from exc

    async def load_offsets(self, topics: Sequence[str]) -> Offsets:
        try:
            raw = await self._client().hgetall(self._offsets_key)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis store error: {exc}") from exc
        wanted = set(topics)
        out: Offsets = {}
        for field, value in raw.items():
            topic, _, part = _text(field).rpartition(":")
            if topic in wanted:
                out[(topic, int(part))] = int(value)
        return out
