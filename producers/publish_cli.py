"""`pawstream publish`: rich progress on stderr, the published ids on stdout (or a file)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiokafka.errors import KafkaConnectionError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pawstream.settings import Settings
from producers.publish import discover, publish_images


def run_publish(
    settings: Settings,
    targets: list[str],
    *,
    by_reference: bool,
    limit: int | None,
    rate: float | None,
    ids_out: Path | None,
    source: str,
    as_json: bool = False,
) -> int:
    """Progress on stderr; the ids on stdout (or ``ids_out``), or one JSON document with ``as_json``."""
    console = Console(stderr=True)
    try:
        total = sum(1 for _ in discover(targets, limit))
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    progress = Progress(
        TextColumn("[bold]publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("publish", total=total, rate="")

        def on_done(_id: str, error: str | None) -> None:
            elapsed = progress.tasks[0].elapsed or 1e-9
            done = progress.tasks[0].completed + 1
            progress.update(task, advance=1, rate=f"{done / elapsed:.0f} img/s")
            if error:
                progress.console.print(f"[yellow]skipped[/] {_id}: {error}")

        try:
            report = asyncio.run(
                publish_images(
                    settings,
                    targets,
                    by_reference=by_reference,
                    limit=limit,
                    rate=rate,
                    source=source,
                    on_done=on_done,
                )
            )
        except KafkaConnectionError:
            console.print(
                f"[red]error:[/] cannot reach the Kafka broker at {settings.kafka.bootstrap_servers} "
                "(start one with `pawstream broker`, or set PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS)"
            )
            return 3
    lines = "".join(f"{i}\n" for i in report.published)
    if ids_out:
        ids_out.write_text(lines)
    if as_json:
        doc = {
            "published": report.published,
            "failed": [{"target": t, "reason": r} for t, r in report.failed],
            "seconds": round(report.seconds, 3),
            "topic": settings.topics.images,
        }
        sys.stdout.write(json.dumps(doc) + "\n")
    elif not ids_out:
        sys.stdout.write(lines)
    console.print(
        f"[green]published {len(report.published)}[/] (acked by the broker), {len(report.failed)} failed, "
        f"in {report.seconds:.1f}s to topic [bold]{settings.topics.images}[/]"
    )
    return 1 if report.failed else 0
