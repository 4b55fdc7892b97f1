"""`pawstream up` as a real process: the whole stack starts, a killed worker comes back, Ctrl-C
stops everything with nothing left behind (also in the middle of starting)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import psutil
import pytest

from stack.plan import probe_image
from tests.support.children import running
from tests.support.cli_process import CliProcess, stack_env
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def workers(up: CliProcess) -> list[psutil.Process]:
    # The launcher execs the command in place: a worker's command line ends with "stack.cli worker".
    return [p for p in up.descendants() if _cmd(p).endswith("stack.cli worker")]


def test_up_restarts_a_killed_worker_and_ctrl_c_leaves_nothing(tiny_artifact: Path, tmp_path: Path) -> None:
    env = stack_env(tiny_artifact, tmp_path / "stack")
    up = CliProcess(["up"], env, ROOT)
    seen: set[psutil.Process] = set()
    try:
        up.wait_for("Ctrl-C stops everything", 90)
        seen.update(up.descendants())
        names = " ".join(_cmd(p) for p in seen)
        for service in ("stack.cli broker", "stack.cli worker", "stack.cli api", "tansu"):
            assert service in names
        (first,) = workers(up)
        first.send_signal(signal.SIGKILL)
        up.wait_for("worker is back", 60)
        (second,) = workers(up)
        assert second.pid != first.pid
        seen.update(up.descendants())
        # The replacement classifies: one image through the API.
        api = f"http://127.0.0.1:{env['PAWSTREAM_API__PORT']}"
        with httpx.Client(base_url=api, timeout=40, trust_env=False) as client:
            files = {"file": ("p.jpg", probe_image(), "image/jpeg")}
            r = client.post("/v1/images", params={"wait": 30}, files=files)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "done"
        up.interrupt()
        assert up.finish(60) == 0, up.output
    finally:
        up.kill_tree()
    assert "all services stopped" in up.output
    assert [p.pid for p in seen if running(p)] == []


def test_ctrl_c_while_starting_leaves_nothing(tiny_artifact: Path, tmp_path: Path) -> None:
    up = CliProcess(["up"], stack_env(tiny_artifact, tmp_path / "stack"), ROOT)
    seen: set[psutil.Process] = set()
    try:
        # As soon as the workers' tier is being started (the broker is up by then).
        def worker_started() -> bool:
            seen.update(up.descendants())
            return bool(workers(up))

        eventually(worker_started, 60, message="a worker process")
        seen.update(up.descendants())
        up.interrupt()
        # 0 or 130 from the handler; -SIGINT when the interrupt lands outside it (e.g. during
        # interpreter start-up or teardown), the usual Ctrl-C status. What matters is below: nothing left.
        assert up.finish(60) in (0, 130, -signal.SIGINT), up.output
    finally:
        up.kill_tree()
    assert len(seen) >= 3, (seen, up.output)
    assert [p.pid for p in seen if running(p)] == [], up.output


def test_up_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    up = CliProcess(["up"], stack_env(tmp_path / "no-model", tmp_path / "stack"), ROOT)
    try:
        assert up.finish(60) == 2
    finally:
        up.kill_tree()
    assert "no model artifact at" in up.output
    assert "make demo" in up.output
