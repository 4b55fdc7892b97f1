"""Result store implementations, chosen by ``settings.api.store``."""

from __future__ import annotations

from api.store.base import ResultStore, Status, StoredResult, StoreUnavailable
from pawstream.settings import ApiSettings


def make_store(api: ApiSettings) -> ResultStore:
    if api.store == "redis":
        from api.store.redis import RedisStore

        return RedisStore(api.redis_url, prefix=api.redis_prefix, ttl_s=api.result_ttl_s)
    from api.store.sqlite import SqliteStore

    return SqliteStore(api.sqlite_path, ttl_s=api.result_ttl_s)


__all__ = ["ResultStore", "Status", "StoreUnavailable", "StoredResult", "make_store"]
