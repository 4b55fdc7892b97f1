"""`make setup` checks the Python version before anything is installed (run for real, with a fake
too-old interpreter and a missing one, into a venv path that must stay absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.deploy import ROOT
from tests.support.fake_python import fake_python

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make_setup(python: str, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "setup", f"PY={python}", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_too_old_python_stops_setup_before_the_venv_with_the_versions_that_work(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = make_setup(str(fake_python(tmp_path, (3, 10))), venv)
    assert done.returncode != 0
    assert "pawstream needs Python 3.11 or 3.12" in done.stderr
    assert "make setup PY=python3.12" in done.stderr
    assert not venv.exists()


def test_a_missing_python_is_named(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = make_setup("python3.99-not-here", venv)
    assert done.returncode != 0
    assert "make setup: python3.99-not-here not found" in done.stderr
    assert not venv.exists()


def test_torch_comes_from_the_index_setup_check_chooses() -> None:
    # The install line is the script's output, not a pin of its own that could pull CUDA torch.
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "tools/setup_check.py torch-args" in recipe
    assert "torch==" not in recipe
