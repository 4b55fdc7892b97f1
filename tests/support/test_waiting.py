"""tests/support/waiting.py: the one deadline-bounded wait the tests share."""

from __future__ import annotations

import itertools

import pytest

from tests.support.waiting import Deadline, eventually, eventually_async


def test_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert (
        eventually(lambda: next(counter) >= 3 and "done", 5, interval=0.001, message="three tries") == "done"
    )


def test_fails_with_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the answer; last value: 41"):
        eventually(lambda: 41, 0.05, interval=0.01, message="the answer", until=lambda v: v == 42)


def test_a_retried_exception_is_reported_and_any_other_fails_at_once() -> None:
    def refuse() -> bool:
        raise ConnectionRefusedError("not yet")

    with pytest.raises(AssertionError, match=r"last error: ConnectionRefusedError\('not yet'\)"):
        eventually(refuse, 0.05, interval=0.01, retry_on=(OSError,), message="a connection")
    with pytest.raises(ConnectionRefusedError):
        eventually(refuse, 60, message="a connection")  # not retried: no wait for the deadline


async def test_async_awaits_a_coroutine_probe_and_builds_the_message_only_on_failure() -> None:
    seen: list[int] = []

    async def probe() -> int:
        seen.append(len(seen))
        return len(seen)

    assert await eventually_async(probe, 5, interval=0.001, until=lambda n: n >= 3, message="three") == 3
    with pytest.raises(AssertionError, match="waiting for built late; last value: 0"):
        await eventually_async(lambda: 0, 0.05, interval=0.01, message=lambda: "built late")


def test_deadline_check_fails_once_expired() -> None:
    Deadline(60).check("not yet")
    with pytest.raises(AssertionError, match="timed out after 0s waiting for it"):
        Deadline(0).check("it")
