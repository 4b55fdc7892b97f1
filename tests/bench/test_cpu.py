"""The bench's CPU accounting: per process, per named thread group, per image."""

from __future__ import annotations

import os
import sys
import time

import pytest

from bench.cpu import CpuWindow, pipeline_best_throughput, pipeline_ceiling
from bench.results import CpuBudget
from pawstream.osthreads import DECODE_THREAD, named_pool


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc accounting")
def test_cpu_window_splits_a_process_by_named_thread_group() -> None:
    w = CpuWindow({"bench": os.getpid(), "whole": os.getpid()}, split={"bench"})
    with named_pool(1, DECODE_THREAD) as pool:  # alive at both snapshots, as the worker's pools are
        pool.submit(lambda: None).result()
        w.start()
        pool.submit(_spin, 0.4).result()
        _spin(0.2)  # this thread: not in a named group
        w.stop()
    budget = w.budget(images=10)
    ms = budget.ms_per_image
    # Idle named threads left by other tests (an OpenMP team named ps-infer) may show up, at ~0.
    assert {"bench_decode", "bench_other", "whole"} <= set(ms)
    assert all(v < 5 for k, v in ms.items() if k not in ("bench_decode", "bench_other", "whole"))
    assert ms["whole"] == pytest.approx(
        sum(v for k, v in ms.items() if k.startswith("bench_")), abs=2
    )  # a tick or two
    assert 35 <= ms["bench_decode"] <= 50  # 0.4 s over 10 images, at the kernel's tick resolution
    assert 15 <= ms["bench_other"] <= 30
    assert budget.images == 10 and budget.window_s >= 0.6
    assert 0 <= budget.idle_pct <= 100 and 0 <= budget.steal_pct <= 100


def test_pipeline_ceiling_counts_everything_but_the_workers_model_threads() -> None:
    budget = CpuBudget(
        window_s=10,
        images=100,
        ms_per_image={
            "worker_model": 30.0,
            "worker_decode": 1.0,
            "worker_other": 1.0,
            "broker": 2.0,
            "load_generator": 1.0,
        },
        idle_pct=0,
        steal_pct=0,
    )
    assert pipeline_ceiling(20.0, budget) == pytest.approx(20 / 25)
    assert pipeline_ceiling(None, budget) is None and pipeline_ceiling(20.0, None) is None
    # two cores, 25 ms of CPU an image at best: 80 images/s
    assert pipeline_best_throughput(20.0, budget, cores=2) == pytest.approx(80.0)
