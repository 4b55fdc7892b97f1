"""A fake interpreter of another Python version: the real one, told its version is ``version``.

`make setup`'s Python check must refuse an interpreter outside requires-python before installing
anything; this stands in for an old or new Python that the machine does not have. It runs the
given script with ``sys.version_info`` replaced, so the check sees the fake version.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def fake_python(folder: Path, version: tuple[int, int]) -> Path:
    """An executable ``python{major}.{minor}`` in ``folder``: ``fake script.py args...`` runs it."""
    # The base interpreter (not this venv's) so the fake is a plain Python, as a newcomer's is.
    real = getattr(sys, "_base_executable", sys.executable)
    code = (
        f"import runpy, sys; sys.version_info = ({version[0]}, {version[1]}, 0, 'final', 0); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    path = folder / f"python{version[0]}.{version[1]}"
    path.write_text(f'#!/bin/sh\nexec {shlex.quote(real)} -c {shlex.quote(code)} "$@"\n')
    path.chmod(0o755)
    return path
