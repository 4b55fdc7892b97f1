"""Child launcher: ``python -m stack.launch PARENT_PID -- COMMAND...``.

It prepares the process, then execs COMMAND in place (same pid):

* It asks Linux to SIGTERM it when the supervisor dies (``PR_SET_PDEATHSIG``), so even a
  SIGKILLed supervisor leaves no service behind. The setting survives ``exec``.
* It clears the signal mask: the supervisor blocks SIGINT/SIGTERM while it spawns (so a Ctrl-C
  cannot land between fork and bookkeeping), and a blocked mask would be inherited. It also
  resets SIGINT/SIGTERM to their defaults, in case the supervisor was started ignoring them.

Only the standard library is imported, to keep the extra start-up a few milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died before prctl took effect: then no signal will ever come.
    if os.getppid() != parent_pid:
        sys.exit(f"launch: parent {parent_pid} is gone")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m stack.launch PARENT_PID -- COMMAND [ARGS...]")
    _die_with_parent(int(argv[0]))
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # An ignored signal stays ignored across exec (a supervisor started with `nohup` or `&`):
    # services must still stop on the supervisor's SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    command = argv[2:]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
