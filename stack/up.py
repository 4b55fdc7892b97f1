"""`pawstream up`: run the local stack until Ctrl-C (or SIGTERM), restarting crashed services."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from pawstream.settings import Settings
from pawstream.vision.artifact import read_meta
from pawstream.vision.registry import RegistryError, resolve_model
from stack.checks import PortInUse
from stack.plan import Stack, StackBusy, plan_stack, start_stack, state_dir
from stack.supervisor import StartupError, Supervisor

logger = logging.getLogger(__name__)

START_ERRORS = (StartupError, PortInUse, StackBusy)
"""Why the local stack could not start: a service failed or was not ready, a port, the state folder."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the same clean-stop path as Ctrl-C."""
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def log_to_file(path: Path) -> None:
    """Send this process's log records to ``path`` (same format): the terminal is for rich output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    if root.handlers and root.handlers[0].formatter is not None:
        handler.setFormatter(root.handlers[0].formatter)
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here


def endpoints_table(stack: Stack, *, title: str = "where to look") -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("API", stack.api_url)
    table.add_row("API docs", f"{stack.api_url}/docs")
    table.add_row("API metrics", f"{stack.api_url}/metrics")
    for name, url in stack.metrics_urls.items():
        table.add_row(f"{name} metrics", url)
    table.add_row("broker", stack.broker)
    table.add_row("MLflow UI", f"mlflow ui --backend-store-uri {stack.settings.training.mlflow_tracking_uri}")
    table.add_row("logs", f"{stack.log_dir}/")
    return table


def check_artifact(settings: Settings) -> tuple[Settings, str | None]:
    """``settings`` serving a readable artifact (``model.source = registry`` resolved once, here,
    so every child serves the same downloaded version), and None; or what to do about it."""
    try:
        settings = resolve_model(settings)
        read_meta(settings.model.artifact_path)
    except (RegistryError, OSError, ValueError) as exc:
        return settings, str(exc)
    return settings, None


@dataclass
class StackRun:
    """The local stack and its supervisor, for the length of a :func:`running_stack` block."""

    stack: Stack
    supervisor: Supervisor
    console: Console

    def start(self) -> float:
        """Start every service under a status line; seconds until the probe image was classified."""
        names = ", ".join(s.name for s in self.stack.specs)
        with self.console.status(f"starting {names} (logs in {self.stack.log_dir}/) ..."):
            return start_stack(self.stack, self.supervisor)


@contextlib.contextmanager
def running_stack(
    settings: Settings, console: Console, *, log_name: str, workers: int | None = None
) -> Iterator[StackRun]:
    """The local stack for the block (`pawstream up` and the demo): holds the state folder and
    plans the services; the block starts them (``run.start()``); all are stopped after it.

    Ctrl-C (or SIGTERM under :func:`sigterm_as_interrupt`) inside the block prints "stopping ..."
    and ends it *without* raising: the code after the ``with`` runs, so the caller says what an
    interrupted run returns. Start-up failures raise one of :data:`START_ERRORS`.
    """
    with state_dir(settings.services.state_dir):
        stack = plan_stack(settings, workers=workers)
        log_to_file(stack.log_dir / log_name)
        for note in stack.notes:
            console.print(f"[yellow]{note}[/]")
        supervisor = stack.supervisor(notify=lambda message: console.print(f"[yellow]{message}[/]"))
        try:
            yield StackRun(stack, supervisor, console)
        except KeyboardInterrupt:
            console.print("stopping ...")
        finally:
            supervisor.stop()
            console.print("all services stopped")


def until_failure(supervisor: Supervisor, console: Console) -> int:
    """Keep the services up until the supervisor gives up on one (Ctrl-C ends this sooner): 1."""
    while not supervisor.failed.wait(0.5):
        pass
    console.print(f"[red]stopping: {supervisor.failure}[/]")
    return 1


def run_up(settings: Settings, *, workers: int | None = None, console: Console | None = None) -> int:
    console = console or Console()
    settings, problem = check_artifact(settings)
    if problem:
        console.print(f"[red]cannot start:[/] {problem} (`make demo` trains one if it is missing)")
        return 2
    try:
        with (
            sigterm_as_interrupt(),
            running_stack(settings, console, log_name="supervisor.log", workers=workers) as run,
        ):
            seconds = run.start()
            console.print(f"[green]pipeline ready[/]: a probe image was classified in {seconds:.1f}s")
            console.print(endpoints_table(run.stack))
            console.print("Ctrl-C stops everything.")
            return until_failure(run.supervisor, console)
        return 0  # Ctrl-C: every service stopped cleanly
    except START_ERRORS as exc:
        console.print(f"[red]could not start the stack:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
