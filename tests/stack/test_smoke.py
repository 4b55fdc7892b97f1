"""`pawstream smoke`, `predict`, `tail` and `publish --json` against a real `pawstream up`, and the
smoke test failing where it must: no monitor behind the API, no API at all."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pawstream.broker import free_port
from stack.children import service_command
from stack.smoke import SmokeOptions, run_smoke_test
from tests.support.cli_process import CliProcess, stack_env
from tests.support.images import jpeg_bytes

ROOT = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        service_command(*args),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_smoke_fails_at_ready_without_an_api() -> None:
    options = SmokeOptions(api=f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    passed, steps = run_smoke_test(options, lambda _step: None)
    assert not passed
    assert [(s.step, s.ok) for s in steps] == [("ready", False)]
    assert "did not answer 200 within 1s" in steps[0].detail


@pytest.mark.integration
def test_predict_tail_and_smoke_against_pawstream_up(tiny_artifact: Path, tmp_path: Path) -> None:
    env = stack_env(
        tiny_artifact,
        tmp_path / "stack",
        PAWSTREAM_SERVICES__MONITOR="true",
        PAWSTREAM_MONITORING__METRICS_PORT=str(free_port()),
    )
    # The client commands reach the stack's broker; `up` itself derives it from broker.port.
    env["PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS"] = f"127.0.0.1:{env['PAWSTREAM_BROKER__PORT']}"
    api = f"http://127.0.0.1:{env['PAWSTREAM_API__PORT']}"
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(1))
    up = CliProcess(["up"], env, ROOT)
    try:
        up.wait_for("Ctrl-C stops everything", 120)

        done = _run(env, "predict", str(photo), "--json")
        assert done.returncode == 0, done.stderr
        (result,) = json.loads(done.stdout)["results"]
        assert result["status"] == "done" and result["label"] in {"cat", "dog"}

        tail = CliProcess(["tail", "pawstream.predictions", "--limit", "5"], env, ROOT)
        try:
            tail.wait_for("tailing pawstream.predictions from the end", 60)
            folder = tmp_path / "five"
            folder.mkdir()
            for i in range(5):
                (folder / f"{i}.jpg").write_bytes(jpeg_bytes(10 + i))
            published = _run(env, "publish", str(folder), "--json")
            assert published.returncode == 0, published.stderr
            ids = json.loads(published.stdout)["published"]
            assert len(ids) == 5
            assert tail.finish(60) == 0, tail.output
        finally:
            tail.kill_tree()
        lines = [line for line in tail.output.splitlines() if re.match(r"\d+:\d+ prediction ", line)]
        assert len(lines) == 5, tail.output
        assert {re.search(r"id=(\S+)", line).group(1) for line in lines} == set(ids)  # type: ignore[union-attr]

        worker_metrics = f"http://127.0.0.1:{env['PAWSTREAM_WORKER__METRICS_PORT']}/metrics"
        monitor_metrics = f"http://127.0.0.1:{env['PAWSTREAM_MONITORING__METRICS_PORT']}/metrics"
        smoke = _run(
            env, "smoke", "--api", api, "--metrics", worker_metrics, "--metrics", monitor_metrics, "--json"
        )
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        report = json.loads(smoke.stdout)
        assert report["ok"] is True
        assert [s["step"] for s in report["steps"]] == [
            "ready", "classify", "label", "lookup", "feedback", "monitoring",
            f"metrics {worker_metrics}", f"metrics {monitor_metrics}",
        ]  # fmt: skip
        up.interrupt()
        assert up.finish(60) == 0, up.output
    finally:
        up.kill_tree()


@pytest.mark.integration
def test_smoke_fails_at_monitoring_when_the_api_has_no_monitor(tiny_artifact: Path, tmp_path: Path) -> None:
    # `make smoke`'s path (--local), with the monitor off: the API serves the placeholder.
    env = stack_env(tiny_artifact, tmp_path / "stack", PAWSTREAM_MONITORING__METRICS_PORT=str(free_port()))
    done = _run(env, "smoke", "--local", "--timeout", "20", "--json", timeout_s=180)
    assert done.returncode == 1, done.stdout + done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [s["step"] for s in steps] == ["ready", "classify", "label", "lookup", "feedback", "monitoring"]
    assert [s["ok"] for s in steps] == [True] * 5 + [False]
    assert "'unavailable'" in steps[-1]["detail"]
    assert "smoke test FAILED at step 'monitoring'" in done.stderr
    assert "all services stopped" in done.stderr
