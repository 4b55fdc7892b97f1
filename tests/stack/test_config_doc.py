"""The README's configuration table is generated from Settings and must stay in step with it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from pawstream.settings import Settings
from stack.config_doc import (
    BEGIN,
    END,
    README,
    iter_settings,
    main,
    render_table,
    settings_field_for_env,
    type_name,
    update_readme_text,
)


def test_readme_table_is_up_to_date() -> None:
    text = README.read_text(encoding="utf-8")
    assert "\n## Configuration\n" in text
    assert BEGIN in text and END in text
    assert update_readme_text(text, render_table()) == text, (
        "README configuration table is stale: run `make docs` (python -m stack.config_doc)"
    )


def test_every_leaf_setting_is_listed_once_and_resolves_back() -> None:
    docs = list(iter_settings())
    names = [d.env for d in docs]
    assert len(names) == len(set(names))
    assert {
        "PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS",
        "PAWSTREAM_LOG_LEVEL",
        "PAWSTREAM_WORKER__MICRO_BATCH_MAX",
    } <= set(names)
    sections = [
        n
        for n, f in Settings.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    ]
    leaves = sum(len(type(getattr(Settings.model_construct(), s)).model_fields) for s in sections)
    scalars = len(Settings.model_fields) - len(sections)
    assert len(docs) == leaves + scalars
    for d in docs:
        assert settings_field_for_env(d.env) is not None, d.env


def test_documented_names_and_defaults_work_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting each variable to its documented default through the environment gives that default:
    the names are the ones pydantic-settings reads and the defaults are written as it parses them."""
    for key in list(os.environ):
        if key.upper().startswith("PAWSTREAM_"):
            monkeypatch.delenv(key)
    baseline = Settings().model_dump()
    checked = 0
    for d in iter_settings():
        if d.default in ("", "<secret>"):
            continue
        monkeypatch.setenv(d.env, d.default)
        checked += 1
    assert Settings().model_dump() == baseline
    assert checked > 40
    monkeypatch.setenv("PAWSTREAM_WORKER__MICRO_BATCH_MAX", "7")  # and a changed value does change it
    assert Settings().worker.micro_batch_max == 7


def test_type_names() -> None:
    class Demo(BaseModel):
        a: Literal["x", "y"] = "x"
        b: int | None = None
        c: list[Path] = Field(default_factory=list)
        d: SecretStr | None = None

    types = {f: type_name(Demo.model_fields[f].annotation) for f in "abcd"}
    assert types == {"a": '"x" | "y"', "b": "int | None", "c": "list[Path]", "d": "secret | None"}


def test_table_escapes_pipes_and_lists_sections() -> None:
    table = render_table()
    rows = [line for line in table.splitlines() if line.startswith("| `PAWSTREAM_")]
    assert len(rows) == len(list(iter_settings()))
    unescaped = re.compile(r"(?<!\\)\|")
    assert all(len(unescaped.findall(line)) == 5 for line in rows), "4 cells per row"
    assert any("\\|" in line for line in rows)  # Literal and Optional types are escaped
    assert "**kafka**: How every client" in table


def test_update_appends_a_section_then_replaces_only_its_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Other\n\ntext\n", encoding="utf-8")
    assert main(["--readme", str(readme), "--check"]) == 1
    assert main(["--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# x\n\n## Other\n\ntext\n\n## Configuration\n\n" + BEGIN)
    readme.write_text(text.replace("| `PAWSTREAM_LOG_LEVEL`", "| `STALE`") + "\n## After\n", encoding="utf-8")
    assert main(["--readme", str(readme), "--check"]) == 1
    assert main(["--readme", str(readme)]) == 0
    assert main(["--readme", str(readme), "--check"]) == 0
    fixed = readme.read_text(encoding="utf-8")
    assert "`STALE`" not in fixed and fixed.endswith("\n## After\n") and fixed.count("## Configuration") == 1
