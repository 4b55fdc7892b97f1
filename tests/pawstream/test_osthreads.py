"""Kernel thread names: what `top -H` and the bench's CPU budget use to find the model's threads."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import torch

from pawstream.osthreads import INFERENCE_THREAD, named_pool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc thread names")


def _comm(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/comm").read_text().strip()


def _comms() -> dict[int, str]:
    return {int(t.name): _comm(int(t.name)) for t in Path("/proc/self/task").iterdir()}


def test_named_pool_threads_carry_the_name_in_the_kernel() -> None:
    with named_pool(2, "ps-test") as pool:
        tids = set(pool.map(lambda _: threading.get_native_id(), range(8)))
        assert {_comm(t) for t in tids} == {"ps-test"}
    assert _comm(threading.get_native_id()) != "ps-test"  # the caller keeps its own name


def test_threads_torch_starts_from_the_named_thread_inherit_its_name() -> None:
    """The OpenMP team is created by the first parallel op in a thread: from a named thread, its
    workers are named alike, which is how the bench tells model CPU from the rest."""
    before = set(_comms())

    def run_model_op() -> int:
        torch.set_num_threads(2)
        x = torch.randn(64, 64, 64)
        for _ in range(5):
            x = torch.nn.functional.conv2d(x.unsqueeze(0), torch.randn(64, 64, 3, 3), padding=1)[0]
        return threading.get_native_id()

    with named_pool(1, INFERENCE_THREAD) as pool:
        caller = pool.submit(run_model_op).result()
        started = {t: c for t, c in _comms().items() if t not in before and t != caller}
    assert started, "torch started no thread of its own (single-threaded build?)"
    assert set(started.values()) == {INFERENCE_THREAD}
