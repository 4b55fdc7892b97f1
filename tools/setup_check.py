"""`make setup`'s two decisions, taken before anything is installed (stdlib only: no venv yet).

``python``: is this interpreter one pyproject.toml's ``requires-python`` accepts? Checked first,
so a wrong Python fails in a second with the versions that work, not after gigabytes of torch.
It runs under whatever ``$(PY)`` is, perhaps an older Python: keep the syntax plain (no walrus,
no ``match``, no ``removeprefix``) so the message, not a SyntaxError, is what users see.

``torch-args``: the pip arguments that install torch and torchvision. On Linux, PyPI's torch is
the CUDA build (gigabytes of CUDA, cuDNN and NCCL packages) and its torchvision is a CUDA build
too, so both come from PyTorch's CPU index, as in the Dockerfile and the CI workflow. Not when
the user has configured pip's sources themselves (an index, extra index, find-links or no-index,
in pip.conf or PIP_* variables): theirs win, which also keeps an offline machine's local wheel
mirror working (adding a network index there would make pip try the network). Elsewhere (macOS,
Windows) PyPI's wheels are already CPU builds. The pins are read from pyproject.toml.
"""

# Annotations stay unevaluated, so a Python older than 3.10 reaches the version message (3.7+).
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_PACKAGES = ("torch", "torchvision")
# pip settings that mean "the user chose where packages come from"
SOURCE_KEYS = ("index-url", "extra-index-url", "find-links", "no-index")


def pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def supported_minors(requires: str) -> list[tuple[int, int]]:
    """The 3.x versions a ``>=3.A,<3.B`` specifier accepts (the only form pyproject uses)."""
    low = re.search(r">=\s*3\.(\d+)", requires)
    high = re.search(r"<\s*3\.(\d+)", requires)
    if low is None or high is None:
        raise SystemExit("tools/setup_check.py: cannot read requires-python " + repr(requires))
    return [(3, minor) for minor in range(int(low.group(1)), int(high.group(1)))]


def check_python(version: tuple[int, int], executable: str, in_venv: bool) -> str | None:
    """None if ``version`` is supported, else the message saying which versions work."""
    found = re.search(r'^requires-python\s*=\s*"([^"]+)"', pyproject(), re.M)
    requires = found.group(1) if found else ""
    minors = supported_minors(requires)
    if version in minors:
        return None
    names = [f"{major}.{minor}" for major, minor in minors]
    lines = [
        f"make setup: pawstream needs Python {' or '.join(names)} (requires-python {requires}); "
        f"{executable} is {version[0]}.{version[1]}.",
        f"Pick one that works, e.g. `make setup PY=python{names[-1]}` (or PY=/path/to/python{names[0]}).",
    ]
    if in_venv:
        lines.append(f"The venv was made with it: remove it first (rm -rf {sys.prefix}).")
    return "\n".join(lines)


def pinned(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each name, as pinned in pyproject.toml's dependencies."""
    pins = []
    for name in names:
        found = re.search(rf'"({re.escape(name)}==[^"]+)"', pyproject())
        if found is None:
            raise SystemExit(f"tools/setup_check.py: no {name}== pin in pyproject.toml")
        pins.append(found.group(1))
    return pins


def user_sources(pip_config_listing: str) -> list[str]:
    """The pip settings (from ``pip config list``) that choose package sources."""
    keys = []
    for line in pip_config_listing.splitlines():
        key = line.split("=", 1)[0].strip()
        if key.rsplit(".", 1)[-1] in SOURCE_KEYS:
            keys.append(key)
    return keys


def pip_config_listing() -> str:
    # pip config list shows pip.conf files (global, user, site) and PIP_* variables (as ":env:");
    # the variables are listed here too in case this Python has no pip to ask.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    env = "".join(
        f":env:.{key[4:].lower().replace('_', '-')}='{value}'\n"
        for key, value in os.environ.items()
        if key.startswith("PIP_")
    )
    return done.stdout + env


def torch_args(platform: str, pip_config: str) -> list[str]:
    index = [] if platform != "linux" or user_sources(pip_config) else ["--index-url", CPU_INDEX]
    return index + pinned(TORCH_PACKAGES)


def main(argv: list[str]) -> int:
    if argv == ["python"]:
        version = (sys.version_info[0], sys.version_info[1])
        problem = check_python(version, sys.executable, sys.prefix != sys.base_prefix)
        if problem:
            sys.stderr.write(problem + "\n")
            return 1
        return 0
    if argv == ["torch-args"]:
        sys.stdout.write(" ".join(torch_args(sys.platform, pip_config_listing())) + "\n")
        return 0
    sys.stderr.write("usage: setup_check.py python | torch-args\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
