"""The supervisor with real child processes: readiness, clean stop without orphans, failed starts,
restarts, optional children, and children dying with a SIGKILLed supervisor."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from pawstream.broker import free_port
from stack.checks import tcp_check
from stack.supervisor import ChildSpec, StartupError, Supervisor
from tests.support.children import FAIL, NEVER_READY, alive, server_argv
from tests.support.waiting import eventually


def server(tmp: Path, name: str, tier: int, *, grandchild: bool = False, **kw: object) -> ChildSpec:
    port = free_port()
    return ChildSpec(
        name,
        server_argv(tmp, name, port, grandchild=grandchild),
        ready=functools.partial(tcp_check, "127.0.0.1", port),
        tier=tier,
        log_path=tmp / f"{name}.log",
        **kw,  # type: ignore[arg-type]
    )


def test_start_and_stop_leave_no_process(tmp_path: Path) -> None:
    sup = Supervisor(
        [server(tmp_path, "broker", 0, grandchild=True), server(tmp_path, "api", 1)], stop_timeout_s=5
    )
    with sup:
        # The broker's grandchild runs in a session of its own: only descendant tracking finds it.
        eventually(lambda: len(sup.all_pids()) >= 3, 10, message="the grandchild to start")
        pids = sup.all_pids()
        assert all(alive(p) for p in pids)
    assert [p for p in pids if alive(p)] == []
    # Clients first, the broker last.
    assert (tmp_path / "stopped.txt").read_text().split() == ["api", "broker"]


def test_a_child_failing_to_start_stops_everything(tmp_path: Path) -> None:
    broker = server(tmp_path, "broker", 0)
    bad = ChildSpec("worker", [sys.executable, "-c", FAIL], tier=1, log_path=tmp_path / "worker.log")
    sup = Supervisor([broker, bad], stop_timeout_s=5)
    with pytest.raises(StartupError) as info:
        sup.start()
    message = str(info.value)
    assert "worker exited with code 3 while starting" in message
    assert "boom: settings are missing a broker address" in message  # the end of its log
    pids = sup.all_pids()
    assert pids
    assert [p for p in pids if alive(p)] == []


def test_readiness_has_a_deadline(tmp_path: Path) -> None:
    slow = ChildSpec(
        "api",
        [sys.executable, "-c", NEVER_READY],
        ready=lambda: "no /readyz yet",
        ready_timeout_s=0.5,
        log_path=tmp_path / "api.log",
    )
    sup = Supervisor([server(tmp_path, "broker", 0), slow], stop_timeout_s=5)
    with pytest.raises(StartupError, match=r"api was not ready after 0s \(no /readyz yet\)"):
        sup.start()
    assert [p for p in sup.all_pids() if alive(p)] == []


def test_a_crashed_child_is_restarted(tmp_path: Path) -> None:
    notes: list[str] = []
    spec = server(tmp_path, "worker", 0)
    sup = Supervisor([spec], stop_timeout_s=5, notify=notes.append)
    with sup:
        first = sup.child("worker").pid
        assert first is not None
        psutil.Process(first).send_signal(signal.SIGKILL)
        eventually(
            lambda: any("is back" in n for n in notes), 15, message="the worker to be restarted and ready"
        )
        second = sup.child("worker").pid
        assert second is not None and second != first
        assert alive(second)
        assert spec.ready is not None and spec.ready() is None
        assert any("worker exited with code -9; restarting" in n for n in notes)
        assert sup.failure is None
    assert not alive(second)


def test_restarts_are_bounded(tmp_path: Path) -> None:
    sup = Supervisor([server(tmp_path, "worker", 0)], stop_timeout_s=5, max_restarts=0)
    with sup:
        pid = sup.child("worker").pid
        assert pid is not None
        psutil.Process(pid).send_signal(signal.SIGKILL)
        assert sup.failed.wait(10)
        assert sup.failure is not None and "giving up" in sup.failure


def test_an_optional_child_that_fails_is_dropped(tmp_path: Path) -> None:
    notes: list[str] = []
    monitor = ChildSpec(
        "monitor", [sys.executable, "-c", FAIL], tier=1, optional=True, log_path=tmp_path / "m.log"
    )
    sup = Supervisor([server(tmp_path, "broker", 0), monitor], stop_timeout_s=5, notify=notes.append)
    with sup:
        assert sup.child("monitor").dropped
        assert any("monitor (optional) exited with code 3" in n for n in notes)
        assert alive(sup.child("broker").pid)  # type: ignore[arg-type]
        assert sup.failure is None


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """Even SIGKILL of the supervisor leaves nothing behind (PR_SET_PDEATHSIG via the launcher)."""
    port = free_port()
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import functools, signal, sys
            from stack.checks import tcp_check
            from stack.supervisor import ChildSpec, Supervisor
            argv = {server_argv(tmp_path, "api", port)!r}
            ready = functools.partial(tcp_check, "127.0.0.1", {port})
            sup = Supervisor([ChildSpec("api", argv, ready=ready)])
            sup.start()
            print(sup.child("api").pid, flush=True)
            while True:  # until the test kills this owner
                signal.pause()
            """
        )
    )
    owner = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert alive(child)
        owner.kill()
        owner.wait(10)
        eventually(lambda: not alive(child), 10, message="the child to die with its supervisor")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
