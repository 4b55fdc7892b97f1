"""The one way a service child is launched: `python -m stack.cli ...` with the Settings' environment."""

from __future__ import annotations

import subprocess

from pawstream.settings import ApiSettings, Settings, to_env
from stack.children import service_command, service_env


def test_the_environment_is_the_settings_not_the_parents_pawstream_variables() -> None:
    settings = Settings(api=ApiSettings(port=8123))
    base = {"PATH": "/usr/bin", "PAWSTREAM_API__API_KEY": "inherited", "PAWSTREAM_API__PORT": "1"}
    env = service_env(settings, base=base, extra={"PYTHONUNBUFFERED": "1"})
    assert env == {"PATH": "/usr/bin", **to_env(settings), "PYTHONUNBUFFERED": "1"}
    assert env["PAWSTREAM_API__PORT"] == "8123"
    assert "PAWSTREAM_API__API_KEY" not in env  # unset in settings: not revived from the parent


def test_the_command_runs_the_pawstream_cli() -> None:
    done = subprocess.run(
        service_command("worker", "--help"),
        env=service_env(Settings()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Faust worker" in done.stdout
