"""`pawstream --version`: the installed package version and the event schema version it speaks."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pawstream.schemas import SCHEMA_VERSION


def package_version() -> str:
    try:
        return version("pawstream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def version_line() -> str:
    return f"pawstream {package_version()} (event schema v{SCHEMA_VERSION})"
