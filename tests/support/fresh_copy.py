"""A fresh copy of the repository, as a newcomer's clone would be: no ../shared photos, no model.

The copy holds the files git tracks plus new ones not yet committed (so a test sees the work in
progress), under ``<tmp>/repo``, and is made a git repository (DVC wants one, as after a clone).
The ``<tmp>/shared`` folder the default photo path points at does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from stack.children import ENV_PREFIX

REPO = Path(__file__).resolve().parents[2]
# The venv running the tests: the copy uses it rather than installing its own.
VENV = Path(sys.executable).parent.parent


def fresh_copy(tmp_path: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    copy = tmp_path / "repo"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a deleted, not yet committed file is still listed
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    git = ["git", "-c", "user.name=newcomer", "-c", "user.email=newcomer@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *args], cwd=copy, check=True, capture_output=True, timeout=60)
    assert not (tmp_path / "shared").exists()
    return copy


def copy_env(copy: Path, **extra: str) -> dict[str, str]:
    """This environment without PAWSTREAM_* settings, running the copy's code with the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PYTHONPATH"] = str(copy)  # the copy's code wins over the venv's editable install
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env
