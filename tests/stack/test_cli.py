"""The `pawstream` command line's own behaviour: --version, fixed choices, one-line settings errors.

Each case runs the real console entry point in a subprocess with real environment variables, as a
user's shell would: what matters is the exit status and that stderr is one line, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
from importlib.metadata import version

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from pawstream.schemas import SCHEMA_VERSION
from pawstream.settings import Settings
from producers.simulate import DRIFTS
from stack.children import service_command, service_env
from stack.cli import RUNTIMES, Drift
from stack.settings_errors import env_name, settings_error_line


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        service_command(*args),
        env=service_env(None, extra={"COLUMNS": "200", **(env or {})}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_names_package_and_schema() -> None:
    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pawstream {version('pawstream')} (event schema v{SCHEMA_VERSION})"


def test_choices_are_the_ones_the_code_accepts() -> None:
    assert tuple(d.value for d in Drift) == DRIFTS
    assert "fp32" in RUNTIMES and "openvino-bf16" in RUNTIMES


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("simulate", ".", "--drift", "foo"), "'foo' is not one of"),
        (("bench", "--runtimes", "bf16,fast"), "unknown runtime fast"),
    ],
)
def test_a_wrong_choice_is_a_usage_error(args: tuple[str, ...], complaint: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert "Traceback" not in done.stderr


# Bad settings and the one line each must produce.
BAD_SETTINGS: list[tuple[dict[str, str], str]] = [
    (
        {"PAWSTREAM_WORKER__MICRO_BATCH_MAX": "abc"},
        "error: PAWSTREAM_WORKER__MICRO_BATCH_MAX='abc': expected an integer (worker.micro_batch_max)",
    ),
    (
        {"PAWSTREAM_REFS__ALLOWED_ROOTS": "/data"},
        'error: PAWSTREAM_REFS__ALLOWED_ROOTS=\'/data\': expected JSON, e.g. ["a", "b"] (refs.allowed_roots)',
    ),
    (
        {"PAWSTREAM_REFS__ALLOWED_ROOTS": '["/data"'},
        "error: PAWSTREAM_REFS__ALLOWED_ROOTS='[\"/data\"': expected valid JSON (a list or object) "
        "(refs.allowed_roots)",
    ),
    (
        {"PAWSTREAM_API__STORE": "mongo"},
        "error: PAWSTREAM_API__STORE='mongo': expected one of 'sqlite' or 'redis' (api.store)",
    ),
    (
        {"PAWSTREAM_LOG_JSON": "maybe"},
        "error: PAWSTREAM_LOG_JSON='maybe': expected true or false (log_json)",
    ),
    (
        {"PAWSTREAM_KAFKA__SESSION_TIMEOUT_S": "100"},
        "error: PAWSTREAM_KAFKA__SESSION_TIMEOUT_S: kafka.session_timeout_s must not exceed "
        "kafka.request_timeout_s (kafka)",
    ),
]


@pytest.mark.parametrize(("env", "line"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_the_variable(
    env: dict[str, str], line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises((ValidationError, SettingsError)) as caught:
        Settings()
    assert isinstance(caught.value, ValidationError | SettingsError)
    assert settings_error_line(caught.value, os.environ) == line


@pytest.mark.parametrize(("env", "line"), BAD_SETTINGS[:2])  # two through a real process: enough
def test_the_cli_prints_that_line_and_exits_2(env: dict[str, str], line: str) -> None:
    done = _run("worker", env=env)  # fails while reading settings, before starting anything
    assert done.returncode == 2
    assert done.stderr.strip() == line
    assert done.stdout == ""


def test_a_deprecated_variable_is_named_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAWSTREAM_WORKER__MAX_BATCH", "x")
    with pytest.raises(ValidationError) as caught, pytest.warns(DeprecationWarning, match="MAX_BATCH"):
        Settings()
    line = settings_error_line(caught.value, os.environ)
    assert line == "error: PAWSTREAM_WORKER__MAX_BATCH='x': expected an integer (worker.micro_batch_max)"


def test_env_name_follows_prefix_and_delimiter() -> None:
    assert env_name(("worker", "micro_batch_max")) == "PAWSTREAM_WORKER__MICRO_BATCH_MAX"
    assert env_name(("refs", "allowed_roots", 0)) == "PAWSTREAM_REFS__ALLOWED_ROOTS"


def test_a_secret_value_is_not_echoed() -> None:
    # Settings accepts any string for its secrets, so the error is built by hand: the rule is that
    # a line that may land in a CI log never carries a password or key.
    error = ValidationError.from_exception_data(
        "Settings", [{"type": "int_parsing", "loc": ("api", "api_key"), "input": "s3cret"}]
    )
    line = settings_error_line(error, {"PAWSTREAM_API__API_KEY": "s3cret"})
    assert line == "error: PAWSTREAM_API__API_KEY=<hidden>: expected an integer (api.api_key)"
