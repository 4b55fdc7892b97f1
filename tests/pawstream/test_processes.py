"""stop_process with real children: one that exits on SIGTERM, one that ignores it, and a group
with a grandchild."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from pawstream.processes import stop_process, wait_or_kill
from tests.support.children import running
from tests.support.waiting import eventually

# Each child writes "ready" once its SIGTERM handler is in place, so the test never signals a
# child that is still starting (whose default action would be to die at once).
GRACEFUL = (
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
    "print('ready', flush=True)\n"
    "signal.pause()"
)
STUBBORN = (
    "import signal\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "while True: signal.pause()"
)
# A leader that exits on SIGTERM and leaves a grandchild, in its group, that ignores SIGTERM.
LEADER = (
    "import signal, subprocess, sys\n"
    f"g = subprocess.Popen([sys.executable, '-c', {STUBBORN!r}], stdout=subprocess.PIPE)\n"
    "g.stdout.readline()\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "print(g.pid, flush=True)\n"
    "signal.pause()"
)


def _start(code: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:  # clean-up if an assertion failed half way
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_a_child_that_exits_on_sigterm_stops_with_its_own_code(procs: list[subprocess.Popen[str]]) -> None:
    proc, line = _start(GRACEFUL)
    procs.append(proc)
    assert line == "ready"
    started = time.monotonic()
    assert stop_process(proc, 10.0) == 7
    assert time.monotonic() - started < 5  # no grace period wasted


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    procs: list[subprocess.Popen[str]],
) -> None:
    proc, line = _start(STUBBORN)
    procs.append(proc)
    assert line == "ready"
    started = time.monotonic()
    assert stop_process(proc, 0.5) == -signal.SIGKILL
    assert time.monotonic() - started >= 0.5


def test_an_exited_child_is_only_reaped(procs: list[subprocess.Popen[str]]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(30)
    assert stop_process(proc, 1.0) == 3


def test_a_group_stop_leaves_no_grandchild(procs: list[subprocess.Popen[str]]) -> None:
    proc, line = _start(LEADER)
    procs.append(proc)
    grandchild = psutil.Process(int(line))
    assert stop_process(proc, 5.0, group=True) == 0  # the leader exited on SIGTERM ...
    # ... and the grandchild, which ignores SIGTERM, was SIGKILLed with the rest of the group.
    eventually(lambda: not running(grandchild), 10, message="the grandchild to go")


def test_a_single_process_stop_leaves_its_group_alone(procs: list[subprocess.Popen[str]]) -> None:
    proc, line = _start(LEADER)
    procs.append(proc)
    grandchild = psutil.Process(int(line))
    try:
        assert stop_process(proc, 5.0) == 0
        assert running(grandchild)
    finally:
        grandchild.kill()
        grandchild.wait(10)


def test_hurry_cuts_the_grace_period_short(procs: list[subprocess.Popen[str]]) -> None:
    proc, _ = _start(STUBBORN)
    procs.append(proc)
    proc.send_signal(signal.SIGTERM)  # ignored
    started = time.monotonic()
    assert wait_or_kill(proc, 30.0, hurry=lambda: time.monotonic() - started > 0.3) == -signal.SIGKILL
    assert time.monotonic() - started < 10
