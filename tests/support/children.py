"""Small real child programs for supervisor tests (written to a temp folder, run with this Python)."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil

# A TCP server; on SIGTERM it appends its name to a file and exits. With --grandchild it first
# starts a blocked process in a session of its own and never cleans it up (like a careless wrapper).
SERVER = r"""
import signal, socket, subprocess, sys, time
name, port, stop_file, grandchild = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
if grandchild:
    subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"], start_new_session=True)
def stop(*_):
    with open(stop_file, "a") as fh:
        fh.write(name + "\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen()
while True:
    conn, _ = s.accept()
    conn.close()
"""

FAIL = "import sys; print('boom: settings are missing a broker address', file=sys.stderr); sys.exit(3)"
NEVER_READY = "import signal\nwhile True: signal.pause()"  # blocks until killed, never listens


def server_argv(tmp: Path, name: str, port: int, *, grandchild: bool = False) -> list[str]:
    script = tmp / "server.py"
    if not script.exists():
        script.write_text(SERVER)
    stop_file = str(tmp / "stopped.txt")
    return [sys.executable, str(script), name, str(port), stop_file, "1" if grandchild else "0"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running(p: psutil.Process) -> bool:
    """Still running (psutil's is_running also rules out a reused pid)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
