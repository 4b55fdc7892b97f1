"""The page's retrain job with stand-in children (no broker): a line longer than asyncio's 64 KiB
readline limit neither fails the job nor orphans the child, and a job whose task ends while the
child still runs takes the child's whole process group with it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from api.retrain_job import RetrainJob
from pawstream.settings import UiSettings
from tests.support.waiting import eventually, eventually_async


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_long_output_line_is_read_in_pieces() -> None:
    script = (
        "import sys\n"
        "sys.stdout.write('x' * 200_000 + '\\n')\n"  # three times asyncio's default line limit
        "print('retrain: step 2/3 dvc repro in .', flush=True)\n"
    )
    job = RetrainJob(UiSettings(retrain=True), command=[sys.executable, "-c", script])
    job.start()
    await eventually_async(lambda: job.state, 30, until=lambda s: s != "running", message="the job ends")
    assert job.state == "succeeded" and job.exit_code == 0, list(job.lines)[-3:]
    assert job.step == "2/3 dvc repro in ."
    assert [len(line) for line in list(job.lines)[:4]] == [65_536, 65_536, 65_536, 200_000 - 3 * 65_536]


async def test_an_ended_job_kills_its_child_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The child starts a grandchild in its own group (as dvc starts its stages), then both wait.
    script = (
        "import os, signal, subprocess, sys\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{g.pid}}')\n"
        "print('retrain: step 1/3 labels export', flush=True)\n"
        "signal.pause()\n"  # until the job's stop signals it
    )
    job = RetrainJob(UiSettings(retrain=True), command=[sys.executable, "-c", script])
    job.start()
    await eventually_async(
        lambda: job.step, 30, until=lambda s: s == "1/3 labels export", message="the first step"
    )
    child, grandchild = (int(p) for p in pids.read_text().split())
    assert job._task is not None
    job._task.cancel()  # the reader gone without stop(): the finally must not leave the child running
    await asyncio.gather(job._task, return_exceptions=True)
    assert job.state == "failed" and job._proc is None
    assert not _alive(child)
    eventually(lambda: not _alive(grandchild), 10, message="the grandchild killed with the group")
