"""Waiting in tests: poll a condition under a deadline, and fail saying what was awaited.

One deadline logic (``_Poll``) serves two entry points:

- ``eventually(predicate, timeout_s)`` for synchronous code: it sleeps with ``time.sleep``;
- ``await eventually_async(predicate, timeout_s)`` for async tests (pytest-asyncio): it sleeps with
  ``asyncio.sleep`` and awaits the predicate's value when it is awaitable, so a probe may be a
  coroutine (an HTTP call, a Kafka admin query) or a plain callable.

Why two functions and not one that guesses: a synchronous poll inside an async test would block
the event loop that the awaited thing (an ASGI app, a consumer task) needs to make progress, and
a single function returning "a value or an awaitable" would leave the caller's type (and whether
to ``await``) to a runtime guess. The caller knows which world it is in; the deadline arithmetic,
the bookkeeping of the last value or exception and the failure message are shared.

Loops that do real work per iteration (for example consuming records, where each poll already
blocks with a timeout) may keep their loop and use a ``Deadline`` instead of their own arithmetic.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

T = TypeVar("T")

Message = str | Callable[[], str]

_NOTHING = object()


class Deadline:
    """A point in time a wait must end by (monotonic clock)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.end = time.monotonic() + timeout_s

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def check(self, message: Message) -> None:
        """Fail the test if the deadline has passed; ``message`` says what was awaited."""
        if self.expired():
            raise AssertionError(f"timed out after {self.timeout_s}s waiting for {_text(message)}")


def _text(message: Message) -> str:
    # A callable message is built only on failure: it may read a log tail or a topic's records.
    return message() if callable(message) else message


def _short(value: object, limit: int = 800) -> str:
    # An HTTP response's repr holds only its status; its body usually says why it is not ready.
    if hasattr(value, "status_code") and hasattr(value, "text"):
        text = f"HTTP {value.status_code} {value.text!r}"
    else:
        text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class _Poll:
    """The deadline logic both entry points share: remember each attempt, then sleep or fail."""

    def __init__(
        self,
        timeout_s: float,
        interval: float,
        message: Message,
        until: Callable[[Any], object] | None,
        retry_on: tuple[type[BaseException], ...],
    ) -> None:
        self.deadline = Deadline(timeout_s)
        self.interval = interval
        self.message = message
        self.until = until
        self.retry_on = retry_on
        self.last: object = _NOTHING
        self.error: BaseException | None = None

    def accepts(self, value: object) -> bool:
        self.last, self.error = value, None
        return bool(self.until(value) if self.until is not None else value)

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """One call of the predicate: an exception in ``retry_on`` means "not yet" and is kept for
        the failure message; any other propagates (an empty tuple catches nothing)."""
        try:
            yield
        except self.retry_on as exc:
            self.error = exc

    def pause(self) -> float:
        """How long to sleep before the next attempt; raises once the deadline has passed."""
        if self.deadline.expired():
            if self.error is not None:
                seen = f"last error: {self.error!r}"
            elif self.last is _NOTHING:
                seen = "no attempt finished"
            else:
                seen = f"last value: {_short(self.last)}"
            raise AssertionError(
                f"timed out after {self.deadline.timeout_s}s waiting for {_text(self.message)}; {seen}"
            ) from self.error
        return min(self.interval, self.deadline.remaining())


def eventually(
    predicate: Callable[[], T],
    timeout_s: float,
    *,
    interval: float = 0.05,
    message: Message,
    until: Callable[[T], object] | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until its value is truthy (or ``until(value)`` is), and return the value.

    On timeout, fail with ``message`` (what was awaited) and the last value or exception seen.
    An exception from ``predicate`` fails the wait at once unless it is one of ``retry_on``
    (e.g. a connection refused while a server starts), so an assertion inside a probe still
    fails fast.
    """
    poll = _Poll(timeout_s, interval, message, until, retry_on)
    while True:
        with poll.attempt():
            value = predicate()
            if poll.accepts(value):
                return value
        time.sleep(poll.pause())  # the polling interval of a deadline-bounded wait


@overload
async def eventually_async(
    predicate: Callable[[], Awaitable[T]],
    timeout_s: float,
    *,
    interval: float = ...,
    message: Message,
    until: Callable[[T], object] | None = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def eventually_async(
    predicate: Callable[[], T],
    timeout_s: float,
    *,
    interval: float = ...,
    message: Message,
    until: Callable[[T], object] | None = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def eventually_async(
    predicate: Callable[[], Any],
    timeout_s: float,
    *,
    interval: float = 0.05,
    message: Message,
    until: Callable[[Any], object] | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """``eventually`` for async code: sleeps without blocking the loop, awaits an awaitable value."""
    poll = _Poll(timeout_s, interval, message, until, retry_on)
    while True:
        with poll.attempt():
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if poll.accepts(value):
                return value
        await asyncio.sleep(poll.pause())
