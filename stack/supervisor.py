"""A small process supervisor for the local stack (`pawstream up`, the demo and tests).

* Every child runs in a session and process group of its own (so a terminal Ctrl-C reaches only
  the supervisor, which then stops the children in order) and is started through
  ``stack.launch``, which makes it die with the supervisor even on SIGKILL.
* Children start in tiers (broker first); each has a readiness check with a bounded deadline.
  If any child exits or misses its deadline while starting, everything is stopped and
  :class:`StartupError` says which child, why, and the end of its log.
* Once running, a child that exits non-zero is restarted (with backoff, at most
  ``max_restarts`` times per ``restart_window_s``); one that exits 0 or runs out of restarts
  marks the supervisor failed (:attr:`Supervisor.failure`), and the owner stops everything.
* Stopping sends SIGTERM to each process group, tier by tier from the last, and SIGKILL after
  ``stop_timeout_s``; descendants that left the group (the broker's own child runs in a session
  of its own) are remembered and killed too, so nothing is left behind. A second Ctrl-C while
  stopping skips the grace period.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import psutil

from pawstream.errors import PawstreamError
from pawstream.processes import signal_process, wait_or_kill

logger = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""A readiness check: None when ready, else a short reason saying what is still missing."""

POLL_S = 0.1
SETTLE_S = 1.0  # a child without a readiness check counts as ready once it has run this long


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    ready: Check | None = None
    ready_timeout_s: float | None = None
    stop_timeout_s: float | None = None  # SIGTERM grace before SIGKILL; default: the supervisor's
    tier: int = 0  # lower tiers start first and stop last
    restart: bool = True
    optional: bool = False  # failing to start or running out of restarts drops it, not the stack
    log_path: Path | None = None


class StartupError(PawstreamError, RuntimeError):
    """A child exited or missed its readiness deadline while the stack was starting."""


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM so a Ctrl-C cannot land between fork and bookkeeping."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def log_tail(path: Path | None, lines: int = 12) -> str:
    """The last lines of a child's log, JSON log records shown as `LEVEL logger: message`."""
    if path is None:
        return ""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 16_384))
            raw = fh.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    out = []
    for line in raw:
        try:
            rec = json.loads(line)
            text = f"{rec.get('level', '')} {rec.get('logger', '')}: {rec.get('message', '')}"
            if rec.get("exc_info"):
                text += " | " + str(rec["exc_info"]).strip().splitlines()[-1]
            out.append(text)
        except (ValueError, AttributeError):
            out.append(line)
    return "\n".join("    " + line[:300] for line in out)


class Child:
    """One supervised service: its current process and everything it spawned."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.restarts: deque[float] = deque()
        self.descendants: dict[int, psutil.Process] = {}
        self.dropped = False
        self.spawned_at = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self) -> None:
        spec = self.spec
        log = subprocess.DEVNULL
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            # A restart appends, so the crash that caused it stays readable.
            log = os.open(
                spec.log_path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self.generation else os.O_TRUNC)
            )
        cmd = [sys.executable, "-m", "stack.launch", str(os.getpid()), "--", *spec.argv]
        try:
            with _signals_blocked():
                self.proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=spec.env,
                    start_new_session=True,
                )
                self.generation += 1
                self.descendants = {}
                self.spawned_at = time.monotonic()
        finally:
            if log != subprocess.DEVNULL:
                os.close(log)
        logger.info(
            "started", extra={"service": spec.name, "pid": self.proc.pid, "generation": self.generation}
        )

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def remember_descendants(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self.descendants.setdefault(p.pid, p)

    def leftovers(self) -> list[psutil.Process]:
        """Remembered descendants still running (psutil guards against pid reuse)."""
        alive = []
        for p in self.descendants.values():
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        return alive

    def all_pids(self) -> list[int]:
        return ([self.proc.pid] if self.proc else []) + list(self.descendants)


@dataclass
class Supervisor:
    specs: list[ChildSpec]
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    max_restarts: int = 5
    restart_window_s: float = 300.0
    notify: Callable[[str], None] = field(default=lambda message: None)

    def __post_init__(self) -> None:
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.children = [Child(s) for s in self.specs]
        self.failure: str | None = None
        self.failed = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._hurry = False
        self._watcher: threading.Thread | None = None
        self._stopped = False

    # -- public ----------------------------------------------------------------------------------

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def start(self) -> Supervisor:
        """Start tier by tier, each child ready before the next tier; on any failure stop all."""
        try:
            for tier in sorted({c.spec.tier for c in self.children}):
                group = [c for c in self.children if c.spec.tier == tier]
                with self._lock:
                    for c in group:
                        c.spawn()
                self._await_ready(group, starting=True)
        except BaseException:
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after the grace period), last tier first."""
        if self._stopped:
            return
        with self._hurry_on_signal():
            with self._lock:
                self._stopping.set()
            for tier in sorted({c.spec.tier for c in self.children}, reverse=True):
                self._terminate([c for c in self.children if c.spec.tier == tier])
            if self._watcher is not None and self._watcher is not threading.current_thread():
                self._watcher.join(self.stop_timeout_s)
        self._stopped = True
        logger.info("all services stopped")

    def all_pids(self) -> list[int]:
        for c in self.children:
            c.remember_descendants()
        return [pid for c in self.children for pid in c.all_pids()]

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- starting and readiness ------------------------------------------------------------------

    def _await_ready(self, group: list[Child], *, starting: bool) -> None:
        started = time.monotonic()
        pending = list(group)
        reasons: dict[str, str] = {}
        while pending:
            for c in list(pending):
                code = c.poll()
                if code is not None:
                    pending.remove(c)
                    self._fatal_or_drop(c, f"exited with code {code} while starting", starting)
                    continue
                reason = self._check(c)
                if reason is None:
                    pending.remove(c)
                    c.remember_descendants()
                    elapsed = time.monotonic() - started
                    logger.info("ready", extra={"service": c.name, "seconds": round(elapsed, 2)})
                    if not starting:
                        self.notify(f"{c.name} is back (ready in {elapsed:.1f}s)")
                    continue
                reasons[c.name] = reason
                timeout = c.spec.ready_timeout_s or self.ready_timeout_s
                if time.monotonic() - started > timeout:
                    pending.remove(c)
                    self._fatal_or_drop(c, f"was not ready after {timeout:.0f}s ({reason})", starting)
            if pending and self._stopping.wait(POLL_S):
                raise StartupError("stopped while starting")

    def _fatal_or_drop(self, c: Child, what: str, starting: bool) -> None:
        if not c.spec.optional or not starting:
            raise StartupError(self._describe(c, what))
        self._drop(c, what)

    def _drop(self, c: Child, what: str) -> None:
        """Give up on an optional child: stop it and carry on without it."""
        c.dropped = True
        self._terminate([c])
        self.notify(f"{c.name} (optional) {what}; continuing without it (log: {c.spec.log_path})")
        logger.warning("optional service dropped", extra={"service": c.name, "reason": what})

    @staticmethod
    def _check(c: Child) -> str | None:
        if c.spec.ready is None:
            up = time.monotonic() - c.spawned_at
            return None if up >= SETTLE_S else f"running for {up:.1f}s"
        try:
            return c.spec.ready()
        except Exception as exc:  # a probe: any error means "not ready yet"
            return f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _describe(c: Child, what: str) -> str:
        where = f" (log: {c.spec.log_path})" if c.spec.log_path else ""
        tail = log_tail(c.spec.log_path)
        return f"{c.name} {what}{where}" + (f"\n  last log lines:\n{tail}" if tail else "")

    # -- watching and restarting -----------------------------------------------------------------

    def _watch(self) -> None:
        tick = 0
        while not self._stopping.wait(POLL_S):
            tick += 1
            for c in self.children:
                if c.dropped:
                    continue
                code = c.poll()
                if code is None:
                    if tick % 10 == 0:
                        c.remember_descendants()
                    continue
                if self._stopping.is_set():
                    return
                self._kill_leftovers(c)
                if not self._restart(c, code):
                    return

    def _restart(self, c: Child, code: int) -> bool:
        """Restart ``c`` after it exited with ``code``; False when the supervisor has failed."""
        if code == 0 or not c.spec.restart:
            return self._give_up(c, f"exited with code {code}")
        now = time.monotonic()
        while c.restarts and now - c.restarts[0] > self.restart_window_s:
            c.restarts.popleft()
        if len(c.restarts) >= self.max_restarts:
            return self._give_up(
                c,
                f"exited with code {code}; restarted {len(c.restarts)} times in "
                f"{self.restart_window_s:.0f}s, giving up",
            )
        c.restarts.append(now)
        delay = min(0.5 * 2 ** (len(c.restarts) - 1), 10.0)
        self.notify(f"{c.name} exited with code {code}; restarting in {delay:.1f}s")
        logger.warning("restarting", extra={"service": c.name, "code": code, "delay_s": delay})
        if self._stopping.wait(delay):
            return False
        with self._lock:
            if self._stopping.is_set():
                return False
            c.spawn()
        try:
            self._await_ready([c], starting=False)  # raises for optional children too: they get restarts
        except StartupError as exc:
            # Not ready in time (or it died again): the next watch round sees the exit and counts it.
            logger.warning("restarted service not ready", extra={"service": c.name, "error": str(exc)})
            if not self._stopping.is_set():
                self._terminate([c])
        return True

    def _give_up(self, c: Child, what: str) -> bool:
        """An optional child is dropped (True: keep watching); any other fails the supervisor."""
        if c.spec.optional:
            self._drop(c, what)
            return True
        self._fail(self._describe(c, what))
        return False

    def _fail(self, message: str) -> None:
        logger.error("supervisor giving up", extra={"reason": message})
        self.failure = message
        self.failed.set()

    # -- stopping --------------------------------------------------------------------------------

    def _terminate(self, group: list[Child]) -> None:
        live = [c for c in group if c.proc is not None]
        for c in live:
            c.remember_descendants()
            if c.proc is not None and c.poll() is None:
                logger.info("stopping", extra={"service": c.name, "pid": c.pid})
                signal_process(c.proc, signal.SIGTERM, group=True)
        signalled = time.monotonic()
        deadline = signalled + self.stop_timeout_s
        for c in live:
            assert c.proc is not None
            own = signalled + (c.spec.stop_timeout_s or self.stop_timeout_s)
            # Its own grace period (cut short by a second Ctrl-C), then SIGKILL for the group and
            # whatever is left in it; then descendants that moved to other sessions.
            wait_or_kill(c.proc, own - time.monotonic(), group=True, hurry=lambda: self._hurry)
            self._kill_leftovers(c, grace_s=max(0.0, deadline - time.monotonic()))

    def _kill_leftovers(self, c: Child, grace_s: float = 2.0) -> None:
        rest = c.leftovers()
        if not rest:
            return
        logger.info("stopping leftover processes", extra={"service": c.name, "pids": [p.pid for p in rest]})
        for p in rest:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(rest, timeout=0 if self._hurry else grace_s)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)

    @contextlib.contextmanager
    def _hurry_on_signal(self) -> Iterator[None]:
        """While stopping, Ctrl-C/SIGTERM mean "skip the grace period", not "abandon the children"."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def hurry(signum: int, frame: FrameType | None) -> None:
            self._hurry = True

        old = {sig: signal.signal(sig, hurry) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
