"""How a service is started as a child process: its command line and its environment.

Every launcher uses these two (the local stack's planner, the benchmark, the tests), so a child is
always `python -m stack.cli COMMAND` run by this interpreter (the `pawstream` console script may
not be on PATH) and configured only by the PAWSTREAM_* variables of the Settings it is given.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from pawstream.settings import Settings, to_env

CLI_MODULE = "stack.cli"
ENV_PREFIX = "PAWSTREAM_"


def service_command(*args: str) -> list[str]:
    """The argv of `pawstream ARGS...` (e.g. ``service_command("worker")``)."""
    return [sys.executable, "-m", CLI_MODULE, *args]


def service_env(
    settings: Settings | None,
    *,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``base`` (default: this process's environment) without its PAWSTREAM_* variables, then
    ``settings`` as PAWSTREAM_* variables (none when None), then ``extra``.

    The inherited PAWSTREAM_* variables go so that ``settings`` alone configures the child: a value
    that ``settings`` leaves unset (None) must not come back from the parent's environment.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(ENV_PREFIX)}
    if settings is not None:
        env.update(to_env(settings))
    env.update(extra or {})
    return env
