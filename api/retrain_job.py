"""The page's retrain action: `pawstream retrain` as one background child process at a time.

The API does not import the command (stack sits above the services): it runs it as a child,
``python -m stack.cli retrain --repo ui.retrain_repo``, with this process's environment (the
PAWSTREAM_* settings the API itself was built from). Its output lines are kept (the last
``ui.retrain_log_lines``) and read for progress: the ``retrain: step N/3`` lines and DVC's
``Running stage '...'``. A second start while one runs is refused. Stopping the API stops the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from pawstream.errors import PawstreamError
from pawstream.settings import UiSettings

logger = logging.getLogger(__name__)

_STEP = re.compile(r"^retrain: step (\d+)/(\d+) (.*)$")
_STAGE = re.compile(r"Running stage '(\w+)'")
_STOP_GRACE_S = 10.0
_CHUNK = 64 * 1024  # the most of one output line kept as one log line


class JobRunning(PawstreamError):
    """A retrain job is already running."""


class RetrainJob:
    def __init__(self, ui: UiSettings, command: Sequence[str] | None = None) -> None:
        self.ui = ui
        self.command = list(
            command or [sys.executable, "-m", "stack.cli", "retrain", "--repo", str(ui.retrain_repo)]
        )
        self.lines: deque[str] = deque(maxlen=ui.retrain_log_lines)
        self.state = "idle"  # idle | running | succeeded | failed
        self.step: str | None = None
        self.stage: str | None = None
        self.exit_code: int | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.runs = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            raise JobRunning("a retrain job is already running")
        self.lines.clear()
        self.state, self.step, self.stage, self.exit_code = "running", "starting", None, None
        self.started_at, self.finished_at = time.time(), None
        self.runs += 1
        self._task = asyncio.create_task(self._run(), name="retrain-job")

    async def _run(self) -> None:
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PAWSTREAM_LOG_JSON": "false"},
                start_new_session=True,  # its dvc and stage processes go with it on stop()
            )
            assert proc.stdout is not None
            await self._read_lines(proc.stdout)
            self.exit_code = await proc.wait()
        except OSError as exc:
            self._line(f"could not start retrain: {exc}")
            self.exit_code = -1
        except Exception as exc:  # whatever went wrong reading it, the child must not be orphaned
            logger.exception("retrain job failed", extra={"error": str(exc)})
            self._line(f"retrain job failed: {exc}")
            self.exit_code = -1
        finally:
            if proc is not None and proc.returncode is None:
                # Still running (the reading failed, or the task was cancelled): its whole group goes.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.shield(proc.wait())
            self.state = "succeeded" if self.exit_code == 0 else "failed"
            self.finished_at = time.time()
            self._proc = None
            logger.info("retrain job finished", extra={"exit_code": self.exit_code})

    async def _read_lines(self, stream: asyncio.StreamReader) -> None:
        """Output lines in chunks: a line of any length (a progress bar redrawn with ``\r``, say)
        is cut into pieces of at most ``_CHUNK`` bytes instead of failing the read."""
        pending = b""
        while chunk := await stream.read(_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._pieces(raw)
            while len(pending) > _CHUNK:
                self._pieces(pending[:_CHUNK])
                pending = pending[_CHUNK:]
        if pending:
            self._pieces(pending)

    def _pieces(self, raw: bytes) -> None:
        for start in range(0, max(len(raw), 1), _CHUNK):
            self._line(raw[start : start + _CHUNK].decode(errors="replace").rstrip())

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if m := _STEP.match(line):
            self.step = f"{m.group(1)}/{m.group(2)} {m.group(3)}"
        elif m := _STAGE.search(line):
            self.stage = m.group(1)

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.ui.retrain,
            "state": self.state,
            "step": self.step,
            "stage": self.stage,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "log": list(self.lines)[-20:],
        }

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), _STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
