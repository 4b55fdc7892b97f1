"""What the demo shows: a live table of recent results with running totals, then a summary."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from stack.demo.client import Outcome, Tally

RECENT_ROWS = 15


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms"


def totals_line(tally: Tally) -> Text:
    done = len(tally.predicted)
    others = len(tally.outcomes) - done
    line = Text()
    line.append(f"{len(tally.outcomes)}/{tally.total} results", style="bold")
    line.append(f"  predicted {done}")
    if others:
        line.append(f"  failed {others}", style="red")
    line.append(f"  throughput {tally.throughput:.1f} img/s")
    line.append("  accuracy so far ")
    line.append(_pct(tally.accuracy), style="bold green")
    q = tally.latency_quantiles()
    if q:
        line.append(f"  latency p50 {_ms(q[0])} p95 {_ms(q[1])}")
    return line


def _row(table: Table, o: Outcome) -> None:
    mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[red]![/]"}[o.correct]
    label = o.label or f"[red]{o.status}[/]"
    detail = o.error or ""
    table.add_row(
        str(o.n),
        (o.id or "-")[:12],
        o.photo.path.name[:24],
        o.photo.label,
        label,
        "-" if o.confidence is None else f"{o.confidence:.3f}",
        _ms(o.latency_s),
        mark,
        detail[:60],
    )


def live_view(tally: Tally) -> RenderableType:
    table = Table(title="pawstream demo: latest predictions", title_justify="left", expand=False)
    for name, justify in (
        ("#", "right"),
        ("id", "left"),
        ("photo", "left"),
        ("true", "left"),
        ("label", "left"),
        ("confidence", "right"),
        ("latency", "right"),
        ("", "center"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for o in tally.outcomes[-RECENT_ROWS:]:
        _row(table, o)
    return Group(table, totals_line(tally))


def summary_table(tally: Tally, *, note: str, startup_s: float, train_s: float) -> Table:
    table = Table(title="summary", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    done = tally.predicted
    table.add_row("photos", note)
    table.add_row(
        "predictions", f"{len(done)} of {tally.total} ({tally.feedback_sent} labelled via feedback)"
    )
    failed = [o for o in tally.outcomes if o.status != "done"]
    if failed:
        table.add_row("not classified", f"[red]{len(failed)}[/] (first: {failed[0].error})")
    correct = sum(1 for o in done if o.correct)
    table.add_row(
        "accuracy", f"[bold green]{_pct(tally.accuracy)}[/] ({correct}/{len(done)}, from the true labels)"
    )
    for label, (ok, n) in tally.per_label().items():
        table.add_row(f"  {label}", f"{_pct(ok / n if n else None)} ({ok}/{n})")
    table.add_row("throughput", f"{tally.throughput:.1f} images/s over {tally.elapsed_s:.1f}s")
    q = tally.latency_quantiles()
    if q:
        table.add_row("latency", f"p50 {_ms(q[0])}, p95 {_ms(q[1])}, max {_ms(q[2])} (publish -> prediction)")
    workers = sorted({o.worker for o in done if o.worker})
    if workers:
        table.add_row("served by", ", ".join(workers))
    table.add_row("stack start", f"{startup_s:.1f}s (until a probe image was classified)")
    if train_s:
        table.add_row("training", f"{train_s / 60:.1f} min (`dvc repro`)")
    return table


def monitoring_view(summary: dict[str, Any] | None) -> RenderableType:
    """GET /v1/monitoring: the monitor's own accuracy (from the feedback it joined) per model
    version, its drift checks and alerts; other fields in brief."""
    if summary is None:
        return Text("monitoring: the API's /v1/monitoring did not answer", style="dim")
    status = summary.get("status")
    if status in ("not_available", "unavailable"):
        return Text(f"monitoring: {summary.get('message') or status}", style="dim")
    table = Table(title="monitoring (GET /v1/monitoring)", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", str(status))
    versions = summary.get("versions")
    for version, figures in (versions or {}).items() if isinstance(versions, dict) else []:
        if not isinstance(figures, dict):
            continue
        acc = figures.get("cumulative_accuracy")
        table.add_row(
            f"model {version}",
            f"accuracy {_pct(acc)} over {figures.get('labelled', 0):.0f} labelled of "
            f"{figures.get('predictions', 0):.0f} predictions (joined by the monitor)",
        )
        drift = figures.get("drift") or {}
        if isinstance(drift, dict) and drift:
            flags = ", ".join(
                f"{metric} {'DRIFT' if d.get('drift') else 'ok'}"
                for metric, d in drift.items()
                if isinstance(d, dict)
            )
            table.add_row("  drift", flags)
    alerts = summary.get("alerts") or []
    table.add_row("alerts", "none" if not alerts else "; ".join(_brief(a) for a in alerts))
    for key, value in summary.items():
        if key not in ("status", "versions", "alerts") and isinstance(value, str | int | float | bool):
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def monitor_labelled(summary: dict[str, Any] | None) -> int:
    """Labelled predictions the monitor has joined so far, over all model versions."""
    versions = (summary or {}).get("versions")
    if not isinstance(versions, dict):
        return 0
    return int(sum(f.get("labelled") or 0 for f in versions.values() if isinstance(f, dict)))


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        parts = [
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in value.items()
            if isinstance(v, str | int | float | bool)
        ]
        return ", ".join(parts[:8])
    return str(value)[:100]
