"""The demo's traffic: each photo goes through the API (POST /v1/images, waiting for its result),
then its true label goes back as feedback (POST /v1/feedback). Results are tallied as they land.
"""

from __future__ import annotations

import asyncio
import mimetypes
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pawstream.references import file_uri
from stack.demo.sample import Photo

RETRY_S = 0.5


@dataclass
class Outcome:
    n: int
    photo: Photo
    id: str | None = None
    status: str = "pending"  # done | failed (dead-lettered) | error (the demo could not get a result)
    label: str | None = None
    confidence: float | None = None
    latency_s: float | None = None  # publish -> prediction emitted, from the prediction itself
    worker: str | None = None
    error: str | None = None
    feedback: bool = False

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.photo.label


@dataclass
class Tally:
    total: int
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    @property
    def predicted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def throughput(self) -> float:
        return len(self.predicted) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def accuracy(self) -> float | None:
        done = self.predicted
        return sum(1 for o in done if o.correct) / len(done) if done else None

    def latency_quantiles(self) -> tuple[float, float, float] | None:
        values = sorted(o.latency_s for o in self.predicted if o.latency_s is not None)
        if not values:
            return None
        if len(values) == 1:
            return values[0], values[0], values[0]
        q = statistics.quantiles(values, n=100, method="inclusive")
        return q[49], q[94], values[-1]

    def per_label(self) -> dict[str, tuple[int, int]]:
        """label -> (correct, predicted)."""
        out: dict[str, tuple[int, int]] = {}
        for o in self.predicted:
            ok, n = out.get(o.photo.label, (0, 0))
            out[o.photo.label] = (ok + bool(o.correct), n + 1)
        return dict(sorted(out.items()))

    @property
    def feedback_sent(self) -> int:
        return sum(1 for o in self.outcomes if o.feedback)


class DemoClient:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        inline_max_bytes: int,
        wait_max_s: float,
        result_timeout_s: float,
    ) -> None:
        self.client = client
        self.inline_max_bytes = inline_max_bytes
        self.wait_max_s = wait_max_s
        self.result_timeout_s = result_timeout_s

    async def _request(self, method: str, url: str, deadline: float, **kwargs: Any) -> httpx.Response:
        """One API call, retried while the API says 503 (broker briefly away) until ``deadline``."""
        while True:
            response = await self.client.request(method, url, **kwargs)
            if response.status_code != 503 or time.monotonic() >= deadline:
                return response
            await asyncio.sleep(RETRY_S)  # back-off before retrying a 503, not a wait for a condition

    async def publish(self, photo: Photo, deadline: float) -> httpx.Response:
        data = photo.path.read_bytes()
        wait = {"wait": self.wait_max_s}
        if len(data) > self.inline_max_bytes:
            # Too big to send inline: by reference (the demo allows its photo folder as a root).
            return await self._request(
                "POST", "/v1/images", deadline, params=wait, json={"ref": file_uri(photo.path)}
            )
        ctype = mimetypes.guess_type(photo.path.name)[0] or "application/octet-stream"
        files = {"file": (photo.path.name, data, ctype)}
        return await self._request("POST", "/v1/images", deadline, params=wait, files=files)

    async def classify(self, n: int, photo: Photo) -> Outcome:
        outcome = Outcome(n, photo)
        deadline = time.monotonic() + self.result_timeout_s
        try:
            response = await self.publish(photo, deadline)
            body = response.json()
            if response.status_code not in (200, 202):
                outcome.status, outcome.error = "error", _error_text(response.status_code, body)
                return outcome
            outcome.id = body["id"]
            while body["status"] == "pending":
                if time.monotonic() >= deadline:
                    outcome.status, outcome.error = "error", f"no result in {self.result_timeout_s:.0f}s"
                    return outcome
                response = await self._request(
                    "GET", f"/v1/predictions/{outcome.id}", deadline, params={"wait": self.wait_max_s}
                )
                body = response.json()
                if response.status_code not in (200, 202):
                    outcome.status, outcome.error = "error", _error_text(response.status_code, body)
                    return outcome
            _fill(outcome, body)
            feedback = await self._request(
                "POST", "/v1/feedback", deadline, json={"id": outcome.id, "label": photo.label}
            )
            outcome.feedback = feedback.status_code == 202
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            outcome.status, outcome.error = "error", f"{type(exc).__name__}: {exc}"
        return outcome


def _fill(outcome: Outcome, body: dict[str, Any]) -> None:
    if body["status"] == "done":
        p = body["prediction"]
        outcome.status = "done"
        outcome.label, outcome.confidence = p["label"], p["confidence"]
        outcome.latency_s, outcome.worker = p["latency_s"], p["worker"]
    else:
        err = body.get("error") or {}
        outcome.status, outcome.error = "failed", f"{err.get('reason')}: {err.get('message')}"


def _error_text(status: int, body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"HTTP {status} {err.get('code')}: {err.get('message')}"
    return f"HTTP {status}"


async def run_sample(
    client: DemoClient,
    photos: list[Photo],
    tally: Tally,
    *,
    concurrency: int,
    on_result: Callable[[Outcome], None] = lambda outcome: None,
) -> Tally:
    """Classify every photo with at most ``concurrency`` in flight; ``tally`` fills as results land."""
    queue: asyncio.Queue[tuple[int, Photo]] = asyncio.Queue()
    for item in enumerate(photos, 1):
        queue.put_nowait(item)

    async def lane() -> None:
        while not queue.empty():
            n, photo = queue.get_nowait()
            outcome = await client.classify(n, photo)
            tally.add(outcome)
            on_result(outcome)

    tally.started = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(min(concurrency, len(photos)))))
    tally.finished = time.monotonic()
    return tally
