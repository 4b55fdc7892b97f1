"""Writing a run down: JSON (timestamped + latest.json), a latency-vs-throughput PNG, and tables
(rich for the terminal, Markdown for the README)."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.results import BenchResult, LoadPoint, best_model_point

logger = logging.getLogger(__name__)


def write_json(result: BenchResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result.started_at.strftime("%Y%m%dT%H%M%SZ")
    text = result.model_dump_json(indent=2) + "\n"
    path = out_dir / f"{stamp}.json"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path


def _label(p: LoadPoint) -> str:
    if p.mode == "max":
        return "max"
    if p.mode == "concurrency":
        return f"c={p.concurrency}"
    return f"{(p.fraction_of_capacity or 0):.0%}"


def plot(result: BenchResult, path: Path) -> Path:
    """p50 and p99 end-to-end latency against achieved throughput, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=90)
    series: list[tuple[str, list[LoadPoint], str]] = [
        (f"pipeline {run.runtime}", [p for p in run.points if p.mode == "rate"] + [run.points[0]], "o")
        for run in result.pipelines
        if run.points
    ]
    if result.baseline is not None:
        series.append((f"baseline {result.baseline.runtime}", result.baseline.points, "s"))
    for name, points, marker in series:
        pts = sorted(points, key=lambda p: p.throughput)
        xs = [p.throughput for p in pts]
        (line,) = ax.plot(xs, [p.latency.p50_ms for p in pts], marker=marker, label=f"{name} p50")
        ax.plot(
            xs,
            [p.latency.p99_ms for p in pts],
            marker=marker,
            linestyle="--",
            color=line.get_color(),
            label=f"{name} p99",
        )
        for p in pts:
            ax.annotate(
                _label(p),
                (p.throughput, p.latency.p99_ms),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.axhline(250, color="grey", linewidth=0.8, linestyle=":", label="250 ms (p99 target at 50%)")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (images/s)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(
        f"pawstream bench: {result.artifact.arch}, {result.machine.cores} cores ({result.machine.cpu})"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _f(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


CPU_COLUMNS = {
    "model threads": ("worker_model", "server_model"),
    "decode threads": ("worker_decode",),
    "rest of process": ("worker_other", "server_other"),
    "broker": ("broker",),
    "load generator": ("load_generator",),
}


def cpu_rows(result: BenchResult) -> list[tuple[str, list[float | None], float | None]]:
    """(what, CPU ms per image per CPU_COLUMNS column + total, idle %) for the model's best
    fp32 point alone, each pipeline at its max, and the baseline at its best concurrency."""
    rows: list[tuple[str, list[float | None], float | None]] = []
    for kind in ("tensor", "bytes"):
        best = best_model_point(result.model_only, "fp32", kind)
        if best is not None and best.cpu_ms_per_image is not None:
            cells: list[float | None] = [best.cpu_ms_per_image] + [None] * (len(CPU_COLUMNS) - 1)
            rows.append(
                (f"model-only fp32, {kind}, batch {best.batch_size}", [*cells, best.cpu_ms_per_image], None)
            )
    points = [
        (f"pipeline {r.runtime}, max", p) for r in result.pipelines for p in r.points if p.mode == "max"
    ]
    if result.baseline is not None:
        conc = [p for p in result.baseline.points if p.mode == "concurrency" and p.cpu is not None]
        top = max(conc, key=lambda p: p.throughput, default=None)
        if top is not None:
            points.append((f"baseline {result.baseline.runtime}, concurrency {top.concurrency}", top))
    for label, p in points:
        if p.cpu is None:
            continue
        ms = p.cpu.ms_per_image
        cells = [
            sum(ms[k] for k in keys if k in ms) if any(k in ms for k in keys) else None
            for keys in CPU_COLUMNS.values()
        ]
        rows.append((label, [*cells, sum(ms.values())], p.cpu.idle_pct))
    return rows


def tables(result: BenchResult) -> list[Table]:
    out: list[Table] = []
    sizes = sorted({p.batch_size for p in result.model_only})
    t = Table(title="model-only (images/s)")
    t.add_column("runtime")
    t.add_column("input")
    for bs in sizes:
        t.add_column(f"batch {bs}", justify="right")
    keys = dict.fromkeys((p.runtime, p.input) for p in result.model_only)
    for runtime, kind in keys:
        row = {
            p.batch_size: p.images_per_s for p in result.model_only if (p.runtime, p.input) == (runtime, kind)
        }
        t.add_row(runtime, kind, *[_f(row.get(bs)) for bs in sizes])
    out.append(t)
    if result.accuracy:
        t = Table(title=f"accuracy on {result.accuracy[0].images} test images")
        for col in ("runtime", "top-1", "agreement with fp32", "drop (points)"):
            t.add_column(col, justify="right" if col != "runtime" else "left")
        for a in result.accuracy:
            t.add_row(a.runtime, f"{a.accuracy:.2%}", f"{a.agreement_with_fp32:.2%}", _f(a.drop_points, 2))
        out.append(t)
    t = Table(title="end to end (publish -> prediction read back)")
    for col in ("system", "load", "img/s", "p50 ms", "p95 ms", "p99 ms", "peak RSS MB"):
        t.add_column(col, justify="left" if col in ("system", "load") else "right")
    for run in result.pipelines:
        for p in run.points:
            thr = p.steady_throughput if p.mode == "max" and p.steady_throughput else p.throughput
            t.add_row(
                f"pipeline {run.runtime}",
                _label(p) if p.mode != "rate" else f"{_label(p)} ({_f(p.target_rate)}/s)",
                _f(thr),
                _f(p.latency.p50_ms, 0),
                _f(p.latency.p95_ms, 0),
                _f(p.latency.p99_ms, 0),
                _f(run.worker_rss_peak_mb, 0),
            )
    if result.baseline is not None:
        for p in result.baseline.points:
            t.add_row(
                f"baseline {result.baseline.runtime}",
                _label(p) if p.mode != "rate" else f"{_f(p.target_rate)}/s offered",
                _f(p.throughput),
                _f(p.latency.p50_ms, 0),
                _f(p.latency.p95_ms, 0),
                _f(p.latency.p99_ms, 0),
                _f(result.baseline.server_rss_peak_mb, 0),
            )
    out.append(t)
    rows = cpu_rows(result)
    if rows:
        t = Table(title="CPU per image, ms (all cores; Linux /proc accounting)")
        for col in ("what", *CPU_COLUMNS, "total", "idle %"):
            t.add_column(col, justify="left" if col == "what" else "right")
        for label, cells, idle in rows:
            t.add_row(
                label,
                *[_f(c, 2) if c is not None else "" for c in cells],
                _f(idle, 0) if idle is not None else "",
            )
        out.append(t)
    t = Table(title="targets (ratios from this run)")
    for col in ("target", "measured", "needed", "met"):
        t.add_column(col)
    for tg in result.targets:
        met = "n/a" if tg.met is None else ("yes" if tg.met else "NO")
        t.add_row(tg.name, _f(tg.value, 2), f"{tg.op} {tg.threshold:g}", met)
    out.append(t)
    return out


def print_tables(result: BenchResult, console: Console) -> None:
    for t in tables(result):
        console.print(t)


def markdown(result: BenchResult) -> str:
    """The README's Performance tables, rendered from one run."""
    lines: list[str] = []
    sizes = sorted({p.batch_size for p in result.model_only})
    lines.append("| model-only, images/s | " + " | ".join(f"batch {b}" for b in sizes) + " |")
    lines.append("|---|" + "---:|" * len(sizes))
    keys = dict.fromkeys((p.runtime, p.input) for p in result.model_only)
    for runtime, kind in keys:
        row = {
            p.batch_size: p.images_per_s for p in result.model_only if (p.runtime, p.input) == (runtime, kind)
        }
        lines.append(f"| {runtime}, {kind} | " + " | ".join(_f(row.get(b)) for b in sizes) + " |")
    lines.append("")
    lines.append("| end to end | load | images/s | p50 ms | p95 ms | p99 ms | peak RSS MB |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for run in result.pipelines:
        for p in run.points:
            thr = p.steady_throughput if p.mode == "max" and p.steady_throughput else p.throughput
            load = _label(p) if p.mode != "rate" else f"{_label(p)} of capacity ({_f(p.target_rate)}/s)"
            lines.append(
                f"| pipeline {run.runtime} | {load} | {_f(thr)} | {_f(p.latency.p50_ms, 0)} | "
                f"{_f(p.latency.p95_ms, 0)} | {_f(p.latency.p99_ms, 0)} | {_f(run.worker_rss_peak_mb, 0)} |"
            )
    if result.baseline is not None:
        b = result.baseline
        for p in b.points:
            load = (
                f"concurrency {p.concurrency}"
                if p.mode == "concurrency"
                else f"{_f(p.target_rate)}/s offered"
            )
            lines.append(
                f"| baseline {b.runtime} | {load} | {_f(p.throughput)} | {_f(p.latency.p50_ms, 0)} | "
                f"{_f(p.latency.p95_ms, 0)} | {_f(p.latency.p99_ms, 0)} | {_f(b.server_rss_peak_mb, 0)} |"
            )
    if result.accuracy:
        lines.append("")
        lines.append(
            f"| accuracy ({result.accuracy[0].images} test images) | top-1 | agreement with fp32 | drop |"
        )
        lines.append("|---|---:|---:|---:|")
        for a in result.accuracy:
            lines.append(
                f"| {a.runtime} | {a.accuracy:.2%} | {a.agreement_with_fp32:.2%} | "
                f"{_f(a.drop_points, 2)} points |"
            )
    rows = cpu_rows(result)
    if rows:
        lines.append("")
        lines.append("| CPU per image, ms | " + " | ".join(CPU_COLUMNS) + " | total | idle % |")
        lines.append("|---|" + "---:|" * (len(CPU_COLUMNS) + 2))
        for label, cells, idle in rows:
            shown = [_f(c, 2) if c is not None else "" for c in cells]
            lines.append(
                f"| {label} | " + " | ".join(shown) + f" | {_f(idle, 0) if idle is not None else ''} |"
            )
    lines.append("")
    lines.append("| target | measured | needed | met |")
    lines.append("|---|---:|---:|---|")
    for tg in result.targets:
        met = "n/a" if tg.met is None else ("yes" if tg.met else "**no**")
        lines.append(f"| {tg.name} | {_f(tg.value, 2)} | {tg.op} {tg.threshold:g} | {met} |")
    return "\n".join(lines) + "\n"


def write_all(result: BenchResult, out_dir: Path) -> tuple[Path, Path]:
    json_path = write_json(result, out_dir)
    png = plot(result, out_dir / f"{json_path.stem}.png")
    (out_dir / "latest.png").write_bytes(png.read_bytes())
    (out_dir / "latest.md").write_text(markdown(result))
    return json_path, png
