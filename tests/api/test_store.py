"""Both result stores against the real thing (SQLite file, the session's Redis): state order,
offsets stored with results, expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.store import ResultStore, Status, StoredResult, StoreUnavailable
from api.store.redis import RedisStore
from api.store.sqlite import SqliteStore
from tests.support.waiting import eventually_async


def build(kind: str, request: pytest.FixtureRequest, tmp_path: Path, ttl_s: float) -> ResultStore:
    if kind == "redis":
        # Requested only here: the SQLite case runs (and passes) on a machine without Redis.
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        return RedisStore(url, prefix=prefix, ttl_s=ttl_s)
    return SqliteStore(tmp_path / "store.sqlite3", ttl_s=ttl_s)


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResultStore]:
    s = build(request.param, request, tmp_path, ttl_s=3600)
    await s.open()
    yield s
    await s.close()


def done(image_id: str, label: str) -> StoredResult:
    return StoredResult(image_id, Status.DONE, f'{{"label": "{label}"}}')


async def test_states_only_move_forward(store: ResultStore) -> None:
    assert await store.get("a") is None
    await store.mark_pending("a")
    assert await store.get("a") == StoredResult("a", Status.PENDING, None)

    failed = StoredResult("a", Status.FAILED, '{"reason": "decode"}')
    await store.apply([failed], {("t", 0): 5})
    assert await store.get("a") == failed
    await store.apply([done("a", "cat")], {("t", 0): 6})
    assert await store.get("a") == done("a", "cat")

    await store.mark_pending("a")  # a late pending marker changes nothing
    await store.apply([StoredResult("a", Status.FAILED, "{}")], {})  # nor does a late dead letter
    assert await store.get("a") == done("a", "cat")
    await store.apply([done("a", "dog")], {})  # a newer prediction (replay) wins
    assert await store.get("a") == done("a", "dog")

    # A result can arrive before the pending marker (a fast worker); the marker then does nothing.
    await store.apply([done("b", "cat")], {})
    await store.mark_pending("b")
    assert (await store.get("b")) == done("b", "cat")


async def test_offsets_are_stored_with_results(store: ResultStore) -> None:
    assert await store.load_offsets(["t"]) == {}
    await store.apply([done("x", "cat")], {("t", 0): 10, ("t", 1): 3, ("u", 0): 7})
    await store.apply([], {("t", 1): 4})
    assert await store.load_offsets(["t"]) == {("t", 0): 10, ("t", 1): 4}
    assert await store.load_offsets(["t", "u"]) == {("t", 0): 10, ("t", 1): 4, ("u", 0): 7}
    await store.ping()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_results_expire(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    s = build(kind, request, tmp_path, ttl_s=0.3)
    await s.open()
    try:
        await s.apply([done("a", "cat")], {})
        await s.mark_pending("b")
        assert await s.get("a") is not None and await s.get("b") is not None

        async def expired() -> bool:
            return await s.get("a") is None and await s.get("b") is None

        await eventually_async(expired, 5, message="the results to expire")
        await s.mark_pending("a")  # an expired id can be reused
        assert (await s.get("a")) == StoredResult("a", Status.PENDING, None)
    finally:
        await s.close()


async def test_sqlite_is_durable_across_reopen(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "d.sqlite3", ttl_s=60)
    await s.open()
    await s.apply([done("a", "cat")], {("t", 0): 1})
    await s.close()
    s = SqliteStore(tmp_path / "d.sqlite3", ttl_s=60)
    await s.open()
    try:
        assert await s.get("a") == done("a", "cat")
        assert await s.load_offsets(["t"]) == {("t", 0): 1}
    finally:
        await s.close()


async def test_unreachable_redis_raises_store_unavailable() -> None:
    s = RedisStore("redis://127.0.0.1:1/0", prefix="x:", ttl_s=60, timeout_s=0.5)
    await s.open()
    try:
        with pytest.raises(StoreUnavailable):
            await s.get("a")
        with pytest.raises(StoreUnavailable):
            await s.ping()
    finally:
        await s.close()
