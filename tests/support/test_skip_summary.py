"""The closing block groups a session's skips by reason, with counts (run on a small suite)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.skip_summary import TITLE

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
import pytest

@pytest.fixture(scope="session")
def service():
    pytest.skip("redis-server not installed")

@pytest.mark.parametrize("n", range(3))
def test_needs_service(service, n):
    pass

@pytest.mark.skipif(True, reason="Linux only")
def test_linux():
    pass

def test_runs():
    pass
"""


def run_suite(tmp_path: Path, source: str) -> str:
    (tmp_path / "test_small.py").write_text(textwrap.dedent(source))
    # Installed plugins stay out (they only slow the start): the plugin under test is named with -p.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.support.skip_summary"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_skips_are_counted_by_reason(tmp_path: Path) -> None:
    out = run_suite(tmp_path, SUITE)
    block = out[out.index(TITLE) :].splitlines()
    assert block[1:3] == ["3 skipped: redis-server not installed", "1 skipped: Linux only"]


def test_no_block_when_nothing_was_skipped(tmp_path: Path) -> None:
    assert TITLE not in run_suite(tmp_path, "def test_runs():\n    pass\n")
