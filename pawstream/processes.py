"""Stopping a child process (or its whole process group): SIGTERM, a grace period, then SIGKILL.

One primitive for every place that stops a child: the embedded broker, the supervisor's services,
the benchmark's worker and baseline server, and the test helpers. ``group=True`` signals the
process group the child leads (a child started with ``start_new_session=True``), so whatever it
spawned in its group stops with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

KILL_WAIT_S = 10.0  # after SIGKILL only a process stuck in the kernel (state D) takes this long
_POLL_S = 0.1  # how often a wait that can be hurried looks at ``hurry``


def signal_process(proc: subprocess.Popen[Any], sig: int, *, group: bool = False) -> None:
    """Send ``sig`` to ``proc`` (or to the group it leads); a process already gone is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            # The group outlives its leader while any member runs: no "already reaped" shortcut.
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)  # a no-op once Popen has reaped it (no stray signal to a reused pid)


def wait_or_kill(
    proc: subprocess.Popen[Any],
    timeout_s: float,
    *,
    group: bool = False,
    hurry: Callable[[], bool] | None = None,
) -> int | None:
    """Wait up to ``timeout_s`` for ``proc`` to exit, else SIGKILL it (or its group) and reap it.

    With ``group``, whatever is still in the group once the leader has gone is SIGKILLed too (an
    orphan left there would otherwise outlive the stop). ``hurry``, polled while waiting, cuts the
    grace period short when it returns True (a second Ctrl-C). Returns the exit code, or None if
    even SIGKILL did not end the process within ``KILL_WAIT_S``.
    """
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        left = deadline - time.monotonic()
        if left <= 0 or (hurry is not None and hurry()):
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(min(left, _POLL_S) if hurry is not None else left)
    if proc.poll() is None:
        logger.warning("did not stop in time; killing", extra={"pid": proc.pid, "group": group})
        signal_process(proc, signal.SIGKILL, group=group)
        try:
            proc.wait(KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            logger.error("still running after SIGKILL", extra={"pid": proc.pid})
            return None
    if group:
        signal_process(proc, signal.SIGKILL, group=True)
    return proc.returncode


def stop_process(proc: subprocess.Popen[Any], timeout_s: float, *, group: bool = False) -> int | None:
    """SIGTERM ``proc`` (or its group), wait up to ``timeout_s``, then SIGKILL; reap it.

    Returns its exit code (negative: the signal that ended it), or None if it would not die.
    """
    if proc.poll() is None:
        signal_process(proc, signal.SIGTERM, group=group)
    return wait_or_kill(proc, timeout_s, group=group)
