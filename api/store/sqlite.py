"""SQLite result store: the embedded default. One file, WAL mode, expiring rows.

All database work runs on one dedicated thread (sqlite3 connections are not thread-safe and
commits must not block the event loop). WAL with synchronous=NORMAL survives process crashes;
a power cut may lose the last transactions, and because offsets commit with their results
the consumer then simply reads those records again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from api.store.base import Offsets, ResultStore, Status, StoredResult, StoreUnavailable

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    rank INTEGER NOT NULL,
    body TEXT,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_expires_at ON results (expires_at);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""

# A state only moves forward (pending < failed < done); an expired row may be reused.
_UPSERT = """
INSERT INTO results (id, status, rank, body, expires_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, rank = excluded.rank, body = excluded.body, expires_at = excluded.expires_at
WHERE excluded.rank >= results.rank OR results.expires_at < ?
"""

_OFFSET_UPSERT = """
INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset
"""

PURGE_INTERVAL_S = 60.0


class SqliteStore(ResultStore):
    def __init__(self, path: Path, *, ttl_s: float) -> None:
        self.path = Path(path)
        self.ttl_s = ttl_s
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._last_purge = 0.0

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store error: {exc}") from exc

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        return fn(self._conn)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, self._connect)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store at {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)  # explicit BEGIN/COMMIT below
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")  # several API processes may share one file
        conn.executescript(_SCHEMA)
        return conn

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._conn is not None:
            await self._run(lambda c: c.close())
            self._conn = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def mark_pending(self, image_id: str) -> None:
        now = time.time()
        row = (image_id, Status.PENDING.value, Status.PENDING.rank, None, now + self.ttl_s, now)
        await self._run(lambda c: c.execute(_UPSERT, row))

    async def get(self, image_id: str) -> StoredResult | None:
        def query(c: sqlite3.Connection) -> tuple[str, str | None] | None:
            sql = "SELECT status, body FROM results WHERE id = ? AND expires_at >= ?"
            found: tuple[str, str | None] | None = c.execute(sql, (image_id, time.time())).fetchone()
            return found

        row = await self._run(query)
        return None if row is None else StoredResult(image_id, Status(row[0]), row[1])

    async def apply(self, results: Sequence[StoredResult], offsets: Mapping[tuple[str, int], int]) -> None:
        now = time.time()
        rows = [(r.id, r.status.value, r.status.rank, r.body, now + self.ttl_s, now) for r in results]
        offset_rows = [(topic, part, off) for (topic, part), off in offsets.items()]
        purge = now - self._last_purge > PURGE_INTERVAL_S
        if purge:
            self._last_purge = now

        def write(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(_UPSERT, rows)
                c.executemany(_OFFSET_UPSERT, offset_rows)
                if purge:
                    c.execute("DELETE FROM results WHERE expires_at < ?", (now,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._run(write)

    async def load_offsets(self, topics: Sequence[str]) -> Offsets:
        def query(c: sqlite3.Connection) -> list[tuple[str, int, int]]:
            marks = ",".join("?" * len(topics))
            sql = f"SELECT topic, partition, next_offset FROM offsets WHERE topic IN ({marks})"
            return c.execute(sql, list(topics)).fetchall()

        return {(t, p): off for t, p, off in await self._run(query)}
