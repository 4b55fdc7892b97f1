"""`pawstream demo`: the README's first command, end to end.

1. A trained artifact must exist; without one the DVC pipeline runs first (`dvc repro`).
2. The local stack starts under the supervisor (broker, worker, API and, unless
   `services.monitor` is off, the monitor), proven ready by a probe image.
3. A balanced sample of labelled photos goes through the API, each followed by its true label
   as feedback, with a live table of results, then a summary and where to look.
4. Everything stops (or, with ``--keep-running``, stays up until Ctrl-C). Ctrl-C at any point
   stops every service cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live

from pawstream.errors import PawstreamError
from pawstream.settings import Settings
from stack.demo.client import DemoClient, Tally, run_sample
from stack.demo.ensure_model import TrainingFailed, ensure_artifact, no_data_hint
from stack.demo.report import live_view, monitor_labelled, monitoring_view, summary_table, totals_line
from stack.demo.sample import Photo, SampleError, choose_sample
from stack.plan import Stack, api_headers
from stack.supervisor import Supervisor
from stack.up import START_ERRORS, endpoints_table, running_stack, sigterm_as_interrupt, until_failure

logger = logging.getLogger(__name__)

MONITOR_CATCH_UP_S = 15.0


class StackFailed(PawstreamError, RuntimeError):
    """The supervisor gave up on a service while the demo was running."""


def allow_root(settings: Settings, root: Path) -> Settings:
    """Let the worker read the demo's photo folder by reference (used for photos too big to inline)."""
    refs = settings.refs
    roots = [*refs.allowed_roots, root.resolve()]
    return settings.model_copy(update={"refs": refs.model_copy(update={"allowed_roots": roots})})


async def _fetch_monitoring(http: httpx.AsyncClient) -> dict[str, Any] | None:
    try:
        response = await http.get("/v1/monitoring")
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if response.status_code == 200 and isinstance(body, dict) else None


async def monitoring_after(http: httpx.AsyncClient, labelled: int, timeout_s: float) -> dict[str, Any] | None:
    """GET /v1/monitoring once the monitor has joined ``labelled`` feedback events (it runs a
    moment behind), or whatever it says at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        summary = await _fetch_monitoring(http)
        status = (summary or {}).get("status")
        if status in ("not_available", "unavailable", None) or monitor_labelled(summary) >= labelled:
            return summary
        if time.monotonic() >= deadline:
            return summary
        await asyncio.sleep(0.5)  # polling interval towards a deadline, not a wait for a condition


async def send_photos(
    stack: Stack, photos: list[Photo], supervisor: Supervisor, console: Console
) -> tuple[Tally, dict[str, Any] | None]:
    s = stack.settings
    limits = httpx.Limits(max_connections=s.demo.concurrency + 4)
    async with httpx.AsyncClient(
        base_url=stack.api_url,
        headers=api_headers(s),
        timeout=s.api.wait_max_s + 15,
        limits=limits,
        trust_env=False,  # local services: never through a proxy from the environment
    ) as http:
        client = DemoClient(
            http,
            inline_max_bytes=s.refs.inline_max_bytes,
            wait_max_s=s.api.wait_max_s,
            result_timeout_s=s.demo.result_timeout_s,
        )
        tally = Tally(total=len(photos))
        task = asyncio.create_task(run_sample(client, photos, tally, concurrency=s.demo.concurrency))
        if console.is_terminal:
            with Live(get_renderable=lambda: live_view(tally), console=console, refresh_per_second=4):
                await _watch(task, supervisor, every_s=0.5)
        else:
            # Not a terminal (CI, a pipe): running totals every few seconds, the table once at the end.
            await _watch(task, supervisor, every_s=5.0, tick=lambda: console.print(totals_line(tally)))
            console.print(live_view(tally))
        return tally, await monitoring_after(http, tally.feedback_sent, MONITOR_CATCH_UP_S)


async def _watch(
    task: asyncio.Task[Tally],
    supervisor: Supervisor,
    *,
    every_s: float,
    tick: Callable[[], None] | None = None,
) -> None:
    """Wait for ``task``, stopping it if the supervisor gives up on a service."""
    while not task.done():
        await asyncio.wait({task}, timeout=every_s)
        if supervisor.failure:
            task.cancel()
            raise StackFailed(supervisor.failure)
        if tick and not task.done():
            tick()
    await task


def run_demo(
    settings: Settings,
    *,
    data: Path | None = None,
    sample: int | None = None,
    keep_running: bool = False,
    train: bool = True,
    console: Console | None = None,
) -> int:
    console = console or Console()
    data_dir = data or settings.demo.data_dir
    hint = no_data_hint(settings, train=train)
    if hint:
        for line in hint:
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        return 2
    with sigterm_as_interrupt():
        try:
            meta, train_s = ensure_artifact(settings, console, train=train)
            photos, note = choose_sample(
                data_dir,
                sample or settings.demo.sample,
                meta.labels,
                seed=settings.demo.seed,
                data_hash=meta.data_hash,
                prefer_held_out=settings.demo.prefer_held_out,
            )
        except (FileNotFoundError, TrainingFailed, SampleError) as exc:
            console.print(f"[red]cannot run the demo:[/] {exc}")
            return 2
        except KeyboardInterrupt:
            console.print("interrupted")
            return 130
        console.print(
            f"model [bold]{meta.name}[/] v{meta.version} ({meta.arch}, labels {', '.join(meta.labels)})"
        )
        console.print(f"sample: {note}")
        try:
            return _with_stack(allow_root(settings, data_dir), photos, note, train_s, keep_running, console)
        except START_ERRORS as exc:
            console.print(f"[red]could not start the stack:[/] {exc}")
            return 1
        except KeyboardInterrupt:
            return 130


def _with_stack(
    settings: Settings, photos: list[Photo], note: str, train_s: float, keep_running: bool, console: Console
) -> int:
    summary_shown = False
    with running_stack(settings, console, log_name="demo.log") as run:
        stack, supervisor = run.stack, run.supervisor
        startup_s = run.start()
        names = ", ".join(spec.name for spec in stack.specs)
        console.print(f"[green]pipeline ready[/] in {startup_s:.1f}s: {names}")
        try:
            tally, monitoring = asyncio.run(send_photos(stack, photos, supervisor, console))
        except StackFailed as exc:
            console.print(f"[red]a service failed:[/] {exc}")
            return 1
        console.print(summary_table(tally, note=note, startup_s=startup_s, train_s=train_s))
        console.print(monitoring_view(monitoring))
        console.print(endpoints_table(stack))
        summary_shown = True
        if keep_running:
            console.print("[bold]services keep running[/]; Ctrl-C stops them.")
            return until_failure(supervisor, console)
        console.print(
            "demo done; stopping the services (`--keep-running` or `pawstream up` keeps them up) ..."
        )
        return 1 if any(o.status == "error" for o in tally.outcomes) else 0
    return 0 if summary_shown else 130  # Ctrl-C: every service stopped cleanly
