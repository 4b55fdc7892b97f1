"""Run real `pawstream worker` processes for integration tests."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pawstream.processes import stop_process
from pawstream.settings import Settings
from stack.children import service_command, service_env


class WorkerProcess:
    """A `pawstream worker` child process configured entirely by ``settings``."""

    def __init__(self, settings: Settings, log_path: Path, name: str = "worker") -> None:
        self.settings = settings
        self.log_path = log_path
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            service_command("worker"),
            env=service_env(self.settings, extra={"PAWSTREAM_WORKER__NAME": self.name}),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (a graceful Faust shutdown); SIGKILL if it hangs."""
        if self.proc is None:
            return None
        return stop_process(self.proc, timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@contextmanager
def running_worker(settings: Settings, log_dir: Path, name: str = "worker") -> Iterator[WorkerProcess]:
    """A worker for the duration of the block; stopped (SIGTERM) afterwards."""
    w = WorkerProcess(settings, log_dir / f"{name}.log", name).start()
    try:
        yield w
    finally:
        w.stop()
