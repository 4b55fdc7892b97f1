"""Where the CPU went during one load point: per process, and inside a pawstream process per
thread group (model threads, decode threads, the rest), from Linux's /proc accounting.

On two shared cores, throughput is CPU per image: whatever the broker, the load generator and
the worker's own event loop spend per image is CPU the model does not get. Knowing the model's
CPU per image alone (model-only) and everything else's (this), the run can state how close the
pipeline could come to model-only at best, before any interference between them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from bench.results import CpuBudget
from pawstream.osthreads import DECODE_THREAD, INFERENCE_THREAD

# Thread-name prefix -> group; pawstream names its threads (pawstream/osthreads.py), and threads
# the inference thread starts (OpenMP, ONNX Runtime, OpenVINO) inherit its name.
THREAD_GROUPS = {INFERENCE_THREAD: "model", DECODE_THREAD: "decode"}
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _stat_cpu_s(path: Path) -> float:
    """utime + stime of a /proc/.../stat file, in seconds (fields 14 and 15, after the comm)."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def process_cpu(pid: int, *, by_thread: bool = True) -> dict[str, float]:
    """CPU seconds so far of process ``pid``: "total" (exited threads included) and, if
    ``by_thread``, one entry per named thread group that has live threads."""
    base = Path(f"/proc/{pid}")
    out = {"total": _stat_cpu_s(base / "stat")}
    for task in (base / "task").iterdir() if by_thread else ():
        with contextlib.suppress(OSError, IndexError, ValueError):  # a thread may exit meanwhile
            comm = (task / "comm").read_text().strip()
            group = next((g for prefix, g in THREAD_GROUPS.items() if comm.startswith(prefix)), None)
            if group is not None:
                out[group] = out.get(group, 0.0) + _stat_cpu_s(task / "stat")
    return out


def system_ticks() -> list[int]:
    """The first line of /proc/stat: user nice system idle iowait irq softirq steal (ticks)."""
    with open("/proc/stat") as fh:
        return [int(x) for x in fh.readline().split()[1:9]]


def supported() -> bool:
    return Path("/proc/self/task").is_dir() and Path("/proc/stat").is_file()


class CpuWindow:
    """Snapshots CPU use of labelled processes; ``budget(images)`` gives CPU ms per image between
    ``start()`` and ``stop()``. A process labelled in ``split`` (a pawstream worker or server) is
    reported by named thread group, as "<label>_<group>", and the rest of it as "<label>_other"."""

    def __init__(self, pids: Mapping[str, int], split: Collection[str] = ()) -> None:
        self.pids = dict(pids)
        self.split = set(split)
        self._t0 = self._t1 = 0.0
        self._before: dict[str, dict[str, float]] = {}
        self._after: dict[str, dict[str, float]] = {}
        self._sys0: list[int] = []
        self._sys1: list[int] = []

    def _snap(self) -> dict[str, dict[str, float]]:
        snap = {}
        for label, pid in self.pids.items():
            with contextlib.suppress(OSError):
                snap[label] = process_cpu(pid, by_thread=label in self.split)
        return snap

    def start(self) -> None:
        self._before, self._sys0, self._t0 = self._snap(), system_ticks(), time.monotonic()

    def stop(self) -> None:
        self._after, self._sys1, self._t1 = self._snap(), system_ticks(), time.monotonic()

    def budget(self, images: int) -> CpuBudget:
        per_image: dict[str, float] = {}
        for label, after in self._after.items():
            before = self._before.get(label, {})
            used = {k: v - before.get(k, 0.0) for k, v in after.items()}
            total = used.pop("total")
            if not used:
                per_image[label] = total
                continue
            for group, seconds in used.items():
                per_image[f"{label}_{group}"] = seconds
            per_image[f"{label}_other"] = max(total - sum(used.values()), 0.0)
        d = [b - a for a, b in zip(self._sys0, self._sys1, strict=True)]
        ticks = sum(d) or 1
        n = max(images, 1)
        return CpuBudget(
            window_s=self._t1 - self._t0,
            images=images,
            ms_per_image={k: 1000 * v / n for k, v in per_image.items()},
            idle_pct=100 * (d[3] + d[4]) / ticks,
            steal_pct=100 * d[7] / ticks,
        )


@contextlib.contextmanager
def cpu_window(pids: Mapping[str, int], split: Collection[str] = ()) -> Iterator[CpuWindow | None]:
    """A started CpuWindow, stopped on exit; None where /proc accounting is not available."""
    if not supported():
        yield None
        return
    w = CpuWindow(pids, split)
    w.start()
    try:
        yield w
    finally:
        w.stop()


def pipeline_ceiling(model_cpu_ms: float | None, budget: CpuBudget | None) -> float | None:
    """The highest pipeline / model-only throughput ratio these cores allow, from CPU per image:
    the model alone (``model_cpu_ms``, model-only) against the model plus everything else the
    pipeline spent per image (``budget`` minus the worker's model threads: the broker, the load
    generator, the worker's decode threads and event loop). An upper bound: it assumes the model
    costs no more CPU in the worker than alone, and that the cores are never idle."""
    if model_cpu_ms is None or budget is None:
        return None
    return model_cpu_ms / (model_cpu_ms + _rest(budget))


def pipeline_best_throughput(
    model_cpu_ms: float | None, budget: CpuBudget | None, cores: int
) -> float | None:
    """Images/s the pipeline would reach on ``cores`` fully busy cores under the same assumptions
    as ``pipeline_ceiling``: the model at its model-only CPU per image, the rest as measured."""
    if model_cpu_ms is None or budget is None:
        return None
    return cores * 1000.0 / (model_cpu_ms + _rest(budget))


def _rest(budget: CpuBudget) -> float:
    return sum(v for k, v in budget.ms_per_image.items() if k != "worker_model")
