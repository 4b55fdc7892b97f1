"""The result store: predictions (and failures) materialized from Kafka, looked up by image id.

A stored item is ``pending`` (the API published the image), ``failed`` (it reached the
dead-letter topic) or ``done`` (a prediction arrived). A later state never goes back:
pending < failed < done, and a newer prediction replaces an older one (a replayed image).
Offsets are stored with the results they produced, so a restart resumes exactly there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pawstream.errors import PawstreamError

# (topic, partition) -> next offset to read
Offsets = dict[tuple[str, int], int]


class Status(StrEnum):
    PENDING = "pending"
    FAILED = "failed"
    DONE = "done"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.PENDING: 0, Status.FAILED: 1, Status.DONE: 2}


@dataclass(frozen=True)
class StoredResult:
    id: str
    status: Status
    body: str | None = None  # JSON: the PredictionEvent (done) or the failure (failed)


class StoreUnavailable(PawstreamError):
    """The store cannot be reached or written (answered as 503)."""


class ResultStore(ABC):
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    @abstractmethod
    async def mark_pending(self, image_id: str) -> None:
        """Record a published image; does nothing if the id already has a result."""

    @abstractmethod
    async def get(self, image_id: str) -> StoredResult | None: ...

    @abstractmethod
    async def apply(self, results: Sequence[StoredResult], offsets: Mapping[tuple[str, int], int]) -> None:
        """Store results and the next offsets to read, in one atomic step."""

    @abstractmethod
    async def load_offsets(self, topics: Sequence[str]) -> Offsets: ...
