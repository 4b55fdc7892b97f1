"""tools/setup_check.py, run as `make setup` runs it: the Python check under a fake too-old
interpreter, and the torch index choice under controlled pip configurations."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.fake_python import fake_python

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "setup_check.py"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("setup_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    return [d for d in deps if d.startswith(("torch==", "torchvision=="))]


def pip_env(**extra: str) -> dict[str, str]:
    """The environment without any pip source setting: no PIP_* variables, no pip.conf files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, **extra}


def torch_args(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "torch-args"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def check_python(python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, str(SCRIPT), "python"], capture_output=True, text=True, timeout=60)


def test_a_supported_python_passes_silently() -> None:
    done = check_python(sys.executable)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_too_old_python_is_refused_naming_the_versions_that_work(tmp_path: Path) -> None:
    done = check_python(str(fake_python(tmp_path, (3, 10))))
    assert done.returncode == 1
    assert "pawstream needs Python 3.11 or 3.12" in done.stderr
    assert "is 3.10." in done.stderr
    assert "make setup PY=python3.12" in done.stderr


def test_a_too_new_python_is_refused_too(tmp_path: Path) -> None:
    done = check_python(str(fake_python(tmp_path, (3, 13))))
    assert done.returncode == 1 and "is 3.13." in done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyPI's torch is a CUDA build on Linux only")
def test_linux_without_a_user_index_takes_torch_from_the_cpu_index() -> None:
    assert torch_args(pip_env()) == ["--index-url", CPU_INDEX, *pins()]


@pytest.mark.parametrize(
    "setting",
    [
        {"PIP_INDEX_URL": "https://mirror.example/simple"},
        {"PIP_EXTRA_INDEX_URL": "https://mirror.example/simple"},
        {"PIP_FIND_LINKS": "/opt/wheels"},
        {"PIP_NO_INDEX": "1"},
    ],
)
def test_a_user_index_in_the_environment_wins(setting: dict[str, str]) -> None:
    assert torch_args(pip_env(**setting)) == pins()


def test_a_user_index_in_pip_conf_wins(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/simple\n")
    assert torch_args(pip_env(PIP_CONFIG_FILE=str(conf))) == pins()


def test_macos_and_windows_keep_pypi_whose_torch_is_cpu_only() -> None:
    script = load_script()
    assert script.torch_args("darwin", "") == pins()
    assert script.torch_args("win32", "") == pins()
    assert script.torch_args("linux", "") == ["--index-url", CPU_INDEX, *pins()]
