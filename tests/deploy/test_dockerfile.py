"""The Dockerfiles parse with BuildKit's own parser and keep their promises: multi-stage, CPU torch
pinned like pyproject, a non-root user, a healthcheck, only the venv copied into the final image,
and a build context that holds the packages and nothing else. (No Docker engine here: CI builds.)"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dockerfile
import pytest
from dockerfile import Command

from tests.support.deploy import COMPOSE_DIR, DOCKERFILE, ROOT


def stages(commands: Sequence[Command]) -> dict[str, list[Command]]:
    out: dict[str, list[Command]] = {}
    current = None
    for c in commands:
        if c.cmd == "FROM":
            values = [v.lower() for v in c.value]
            current = c.value[values.index("as") + 1] if "as" in values else f"stage{len(out)}"
            out[current] = []
        elif current is not None:
            out[current].append(c)
    return out


@pytest.fixture(scope="module")
def commands() -> tuple[Command, ...]:
    return dockerfile.parse_file(str(DOCKERFILE))


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pins(requirements: list[str]) -> dict[str, str]:
    return {
        m["name"].lower(): m["version"]
        for r in requirements
        if (m := re.match(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>[^;\s]+)", r))
    }


INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


@pytest.mark.parametrize("path", [DOCKERFILE, COMPOSE_DIR / "mlflow" / "Dockerfile"], ids=["app", "mlflow"])
def test_only_known_instructions_with_arguments(path: Path) -> None:
    # BuildKit's parser is syntactic: it accepts unknown instructions, so check them here.
    for c in dockerfile.parse_file(str(path)):
        assert c.cmd.upper() in INSTRUCTIONS, f"line {c.start_line}: {c.original}"
        assert c.value and all(c.value), f"line {c.start_line}: {c.original}"


def test_parser_reports_syntax_errors() -> None:
    with pytest.raises(dockerfile.GoParseError):
        dockerfile.parse_string("FROM python:3.11\nENV ONLY_A_NAME\n")
    with pytest.raises(dockerfile.GoParseError):
        dockerfile.parse_string("FROM python:3.11\nRUN <<EOF\necho never closed\n")


def test_multi_stage_with_a_slim_runtime(commands: tuple[Command, ...]) -> None:
    s = stages(commands)
    assert list(s) == ["builder", "runtime"]
    froms = [c.value[0] for c in commands if c.cmd == "FROM"]
    assert all("slim" in f for f in froms), froms
    runtime = s["runtime"]
    copies = [c for c in runtime if c.cmd == "COPY"]
    # Only the built venv crosses over: no compilers, caches or sources in the final image.
    assert [(c.flags, c.value) for c in copies] == [(("--from=builder",), ("/opt/venv", "/opt/venv"))]


def test_cpu_torch_pinned_like_pyproject(commands: tuple[Command, ...], pyproject: dict[str, Any]) -> None:
    wanted = pins(pyproject["project"]["dependencies"])
    builder = stages(commands)["builder"]
    torch_runs = [" ".join(c.value) for c in builder if c.cmd == "RUN" and "torch==" in " ".join(c.value)]
    assert len(torch_runs) == 1
    run = torch_runs[0]
    assert f"torch=={wanted['torch']}" in run
    assert f"torchvision=={wanted['torchvision']}" in run
    index_args = [c.value[0] for c in builder if c.cmd == "ARG" and c.value[0].startswith("TORCH_INDEX_URL=")]
    assert index_args == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"]
    assert '--index-url "${TORCH_INDEX_URL}"' in run


def test_runtime_runs_as_non_root_with_healthcheck_and_tini(commands: tuple[Command, ...]) -> None:
    runtime = stages(commands)["runtime"]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users, "the final stage needs a USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    (health,) = [c for c in runtime if c.cmd == "HEALTHCHECK"]
    assert health.value[0] == "CMD"
    assert "HEALTHCHECK_URL" in " ".join(health.value)
    env = " ".join(" ".join(c.value) for c in runtime if c.cmd == "ENV")
    assert "http://127.0.0.1:9101/healthz" in env  # default probe: the worker's /healthz beside its exporter
    (entrypoint,) = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and list(entrypoint.value) == ["tini", "--"]
    (cmd,) = [c for c in runtime if c.cmd == "CMD"]
    assert cmd.value[0] == "pawstream"


def _package_dirs(pyproject: dict[str, Any]) -> list[str]:
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.rstrip("*").rstrip(".") for p in include})


def test_every_package_is_copied_into_the_build(
    commands: tuple[Command, ...], pyproject: dict[str, Any]
) -> None:
    builder = stages(commands)["builder"]
    copied = {c.value[0] for c in builder if c.cmd == "COPY" and not c.flags}
    assert set(_package_dirs(pyproject)) | {"pyproject.toml"} <= copied
    stub_loop = next(c for c in builder if c.cmd == "RUN" and "touch" in c.value[0])
    for pkg in _package_dirs(pyproject):
        assert re.search(rf"\b{pkg}\b", stub_loop.value[0]), f"{pkg} missing from the dependency-layer stubs"


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore syntax: Go's filepath.Match plus ``**`` for any number of folders."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignore_allows(patterns: list[str], path: str) -> bool:
    """The last matching pattern wins; a pattern matching a parent folder matches what is inside."""
    allowed = True
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            allowed = pattern.startswith("!")
    return allowed


def test_build_context_holds_the_packages_and_nothing_else(pyproject: dict[str, Any]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: everything is excluded first"
    for pkg in _package_dirs(pyproject):
        assert _dockerignore_allows(patterns, f"{pkg}/__init__.py"), pkg
    for needed in ("pyproject.toml", "README.md", "stream/worker/faust_app.py"):
        assert _dockerignore_allows(patterns, needed), needed
    for kept_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "models/x/weights.pt",
        "data/split.csv",
        "mlruns/0/m",
        "tests/conftest.py",
        "compose/.env",
        "pawstream/__pycache__/x.pyc",
        "bench/results/r.json",
    ):
        assert not _dockerignore_allows(patterns, kept_out), kept_out


def test_mlflow_image_parses_and_pins_its_driver() -> None:
    commands = dockerfile.parse_file(str(COMPOSE_DIR / "mlflow" / "Dockerfile"))
    args = {
        c.value[0].split("=")[0]: c.value[0].split("=", 1)[1]
        for c in commands
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["MLFLOW_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["PSYCOPG2_VERSION"])
    run = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    assert "psycopg2-binary==${PSYCOPG2_VERSION}" in run and "mlflow==${MLFLOW_VERSION}" in run
    assert [c.value[0] for c in commands if c.cmd == "USER"] == ["mlflow"]


def test_files_exist() -> None:
    for path in (DOCKERFILE, ROOT / ".dockerignore", COMPOSE_DIR / "mlflow" / "Dockerfile"):
        assert Path(path).is_file()
