"""Settings from the environment: renamed ones (the old variables still work), empty values."""

from __future__ import annotations

import logging
import os

import pytest

from pawstream.settings import RENAMED, Settings, to_env


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("PAWSTREAM_"):
            monkeypatch.delenv(key)


@pytest.mark.parametrize(
    ("old", "new", "read"),
    [
        (
            "PAWSTREAM_WORKER__MAX_BATCH",
            "PAWSTREAM_WORKER__MICRO_BATCH_MAX",
            lambda s: s.worker.micro_batch_max,
        ),
        (
            "PAWSTREAM_WORKER__INFERENCE_CHUNK",
            "PAWSTREAM_WORKER__MODEL_BATCH_MAX",
            lambda s: s.worker.model_batch_max,
        ),
        (
            "PAWSTREAM_WORKER__MAX_BATCH_PIXELS",
            "PAWSTREAM_WORKER__DECODE_SLICE_PIXELS",
            lambda s: s.worker.decode_slice_pixels,
        ),
        (
            "PAWSTREAM_MONITORING__MAX_BATCH",
            "PAWSTREAM_MONITORING__MICRO_BATCH_MAX",
            lambda s: s.monitoring.micro_batch_max,
        ),
    ],
)
def test_an_old_variable_still_works_and_warns_with_the_new_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, old: str, new: str, read: object
) -> None:
    monkeypatch.setenv(old, "7")
    with caplog.at_level(logging.WARNING, logger="pawstream.settings"), pytest.deprecated_call(match=new):
        settings = Settings()
    assert read(settings) == 7  # type: ignore[operator]
    assert any(old in r.getMessage() and new in r.getMessage() for r in caplog.records)
    # a child process is handed the new name only
    env = to_env(settings)
    assert env[new] == "7" and old not in env

    monkeypatch.setenv(new, "9")  # both set: the new one wins, and the warning says so
    with pytest.deprecated_call(match=f"{new} is also set and wins"):
        settings = Settings()
    assert read(settings) == 9  # type: ignore[operator]


def test_new_names_alone_do_not_warn(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    monkeypatch.setenv("PAWSTREAM_WORKER__MICRO_BATCH_MAX", "5")
    assert Settings().worker.micro_batch_max == 5
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_every_renamed_field_exists_under_its_new_name_only() -> None:
    s = Settings()
    for section, renames in RENAMED.items():
        fields = type(getattr(s, section)).model_fields
        for old, new in renames.items():
            assert new in fields and old not in fields


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_challenger_variable_means_no_challenger(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # As compose passes it when .env.example's PAWSTREAM_WORKER__CHALLENGER= is left empty.
    monkeypatch.setenv("PAWSTREAM_WORKER__CHALLENGER", value)
    settings = Settings()
    assert settings.worker.challenger is None
    assert to_env(settings).get("PAWSTREAM_WORKER__CHALLENGER", "") == ""


def test_a_malformed_challenger_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAWSTREAM_WORKER__CHALLENGER", "runs:/abc/model")
    with pytest.raises(ValueError, match="models:/NAME@ALIAS"):
        Settings()
