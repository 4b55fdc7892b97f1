"""Run `pawstream up` / `pawstream demo` as real processes, configured through the environment."""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from pawstream.broker import free_port
from stack.children import service_command, service_env
from tests.support.waiting import Deadline

# Execs the command line it is given in place, with SIGINT at its default: a test run started in
# the background (`pytest &`) ignores SIGINT, and children would inherit that.
_WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def stack_env(artifact: Path, state_dir: Path, **extra: str) -> dict[str, str]:
    """Free ports for everything (other stacks may hold the defaults), no monitor, short sessions."""
    return service_env(
        None,  # no Settings: these few variables and the defaults configure the stack
        extra={
            "PAWSTREAM_MODEL__ARTIFACT_PATH": str(artifact),
            "PAWSTREAM_SERVICES__STATE_DIR": str(state_dir),
            "PAWSTREAM_SERVICES__MONITOR": "false",
            "PAWSTREAM_BROKER__PORT": str(free_port()),
            "PAWSTREAM_API__PORT": str(free_port()),
            "PAWSTREAM_WORKER__METRICS_PORT": str(free_port()),
            # A replacement worker waits for the dead member's session to expire: keep it short.
            "PAWSTREAM_KAFKA__SESSION_TIMEOUT_S": "4",
            "PAWSTREAM_KAFKA__HEARTBEAT_INTERVAL_S": "0.5",
            "COLUMNS": "200",
            **extra,
        },
    )


class CliProcess:
    """A `pawstream ...` process whose output is collected line by line in the background."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WITH_SIGINT, *service_command(*args)],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)

    def _drain(self, timeout_s: float) -> None:
        try:
            self.lines.append(self._queue.get(timeout=timeout_s))
            while True:
                self.lines.append(self._queue.get_nowait())
        except queue.Empty:
            pass

    @property
    def output(self) -> str:
        self._drain(0)
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        # A loop rather than `eventually`: each turn does the reading (a drain that blocks up to
        # 0.1 s for the next line), and an exited process ends the wait early.
        deadline = Deadline(timeout_s)
        while text not in "".join(self.lines):
            if deadline.expired() or (self.proc.poll() is not None and self._queue.empty()):
                raise AssertionError(f"{text!r} did not appear in {timeout_s}s; output:\n{self.output}")
            self._drain(0.1)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def finish(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout_s)
        self._drain(0.2)
        return code

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def kill_tree(self) -> None:
        """Test clean-up only: whatever is still running. The supervisor goes first, so it cannot
        restart the services being killed; they are remembered before it dies."""
        if self.proc.poll() is not None:
            return
        rest = self.descendants()
        self.proc.kill()
        self.proc.wait(10)
        for p in rest:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(rest, timeout=10)
