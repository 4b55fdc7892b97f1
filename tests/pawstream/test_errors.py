"""Every exception the project defines has the one base class, pawstream.errors.PawstreamError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from pawstream.errors import PawstreamError
from pawstream.schemas import DeadLetterReason, EventError, UnknownSchemaVersion, parse_image_event

# The first-party packages (pyproject's [tool.setuptools.packages.find]).
PACKAGES = ("pawstream", "stream", "producers", "api", "training", "bench", "stack")


def _first_party_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for top in PACKAGES:
        package = importlib.import_module(top)
        names = [top, *(m.name for m in pkgutil.walk_packages(package.__path__, f"{top}."))]
        for name in names:
            if name.endswith("__main__"):  # running it is the entry point, not a definition
                continue
            module = importlib.import_module(name)
            found += [
                c
                for c in vars(module).values()
                if inspect.isclass(c) and issubclass(c, BaseException) and c.__module__ == name
            ]
    return found


def test_every_project_exception_subclasses_pawstream_error() -> None:
    classes = _first_party_exceptions()
    assert len(classes) >= 14  # the walk reached the services and the app shell
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, PawstreamError))
    assert outside == []


def test_errors_that_end_as_dead_letters_carry_their_reason() -> None:
    assert UnknownSchemaVersion(2).reason is DeadLetterReason.SCHEMA
    assert isinstance(UnknownSchemaVersion(2), ValueError)  # its callers catch it as one
    assert EventError(DeadLetterReason.DECODE, "x").reason is DeadLetterReason.DECODE
    with pytest.raises(EventError) as caught:
        parse_image_event(b'{"v": 2, "type": "image", "ref": "file:///x"}')
    assert caught.value.reason is DeadLetterReason.SCHEMA and isinstance(caught.value, PawstreamError)
