"""Per-id waiters: ``?wait`` requests park on a future that the consumer resolves.

No polling: the consumer calls :meth:`Waiters.resolve` right after it stored a result, with the
state the store then holds for the id (not the record it read), and every request waiting for
that id wakes up. Each replica reads all partitions, so whichever replica
holds the request sees the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from api.store.base import StoredResult


class Waiters:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_id: dict[str, set[asyncio.Future[StoredResult]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.limit

    @contextmanager
    def watch(self, image_id: str) -> Iterator[asyncio.Future[StoredResult]]:
        """A future resolved with the id's next stored result; removed on exit."""
        fut: asyncio.Future[StoredResult] = asyncio.get_running_loop().create_future()
        self._by_id.setdefault(image_id, set()).add(fut)
        self._count += 1
        try:
            yield fut
        finally:
            self._count -= 1
            futs = self._by_id.get(image_id)
            if futs is not None:
                futs.discard(fut)
                if not futs:
                    del self._by_id[image_id]
            fut.cancel()

    def watching(self, image_id: str) -> bool:
        return image_id in self._by_id

    def resolve(self, result: StoredResult) -> int:
        futs = self._by_id.get(result.id, ())
        woken = 0
        for fut in futs:
            if not fut.done():
                fut.set_result(result)
                woken += 1
        return woken


async def wait_result(fut: asyncio.Future[StoredResult], timeout_s: float) -> StoredResult | None:
    """The result the future receives within ``timeout_s``, else None."""
    try:
        async with asyncio.timeout(timeout_s):
            return await fut
    except TimeoutError:
        return None
