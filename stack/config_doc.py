"""The configuration reference, generated from :class:`pawstream.settings.Settings`.

Every setting is an environment variable ``PAWSTREAM_<SECTION>__<FIELD>``. This module walks the
nested pydantic models to list them (name, type, default, description), renders the README's
configuration table and resolves a variable name back to its field, so deployment files can be
checked against Settings. ``make docs`` (``python -m stack.config_doc``) rewrites the table;
``--check`` only reports whether it is stale.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pawstream.settings import RENAMED, Settings

logger = logging.getLogger(__name__)

BEGIN = "<!-- BEGIN config-table: generated from pawstream.settings.Settings by `make docs`; do not edit -->"
END = "<!-- END config-table -->"
HEADING = "## Configuration"
README = Path(__file__).resolve().parents[1] / "README.md"

INTRO = """\
Every setting is an environment variable: the prefix `PAWSTREAM_`, then the section and the field
joined by `__`, case-insensitive, e.g. `PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092`. List values
are JSON (`PAWSTREAM_REFS__ALLOWED_ROOTS='["/data/images"]'`). Entry points read them once into
`pawstream.settings.Settings`. The compose stack passes the ones listed under `x-pawstream-env` in
`compose/compose.yml` from `compose/.env` (see `compose/.env.example`)."""


@dataclass(frozen=True)
class SettingDoc:
    env: str
    type: str
    default: str
    description: str
    section: str
    section_doc: str


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type, as a user writes its value."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(a) if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, set, tuple, frozenset):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"list[{inner}]"
    if origin is dict:
        return f"dict[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(json.dumps(m.value) for m in annotation)
    if isinstance(annotation, type):
        return "secret" if issubclass(annotation, SecretStr) else annotation.__name__
    return str(annotation).replace("typing.", "")


def field_default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def env_value(value: Any) -> str:
    """A default as it would be written in the environment ('' for unset)."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return "<secret>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        data = value if isinstance(value, dict) else [str(v) for v in value]
        return json.dumps(data, separators=(",", ":"))
    return str(value)


def iter_settings(
    model: type[BaseModel] = Settings,
    prefix: str | None = None,
    section: str = "general",
    section_doc: str = "",
) -> Iterator[SettingDoc]:
    """Every leaf setting as a variable, top-level scalars first, then each section in field order."""
    if prefix is None:
        prefix = str(model.model_config.get("env_prefix", ""))
    delimiter = str(Settings.model_config.get("env_nested_delimiter") or "__")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        if _is_model(field.annotation):
            nested.append((name, typing.cast(type[BaseModel], field.annotation)))
            continue
        yield SettingDoc(
            env=f"{prefix}{name}".upper(),
            type=type_name(field.annotation),
            default=env_value(field_default(field)),
            description=" ".join((field.description or "").split()),
            section=section,
            section_doc=section_doc,
        )
    for name, sub in nested:
        # The docstring's summary line only: the rest is for developers.
        doc = (sub.__doc__ or "").strip().split("\n\n", 1)[0]
        doc = " ".join(doc.split()).split(". ", 1)[0].rstrip(".") + "." if doc else ""
        yield from iter_settings(sub, f"{prefix}{name}{delimiter}", name, doc)


def settings_field_for_env(name: str, model: type[BaseModel] = Settings) -> str | None:
    """The dotted field path a ``PAWSTREAM_...`` variable sets, or None when Settings has no such field.

    Mirrors pydantic-settings' lookup: the prefix, then ``__``-separated field names, case-insensitive
    (a section may also be given whole, as JSON). A renamed setting's old name (settings.RENAMED)
    resolves to its new field, as Settings still reads it.
    """
    prefix = str(model.model_config.get("env_prefix", ""))
    delimiter = str(model.model_config.get("env_nested_delimiter") or "__")
    if not name.upper().startswith(prefix.upper()):
        return None
    parts = name[len(prefix) :].lower().split(delimiter)
    current: type[BaseModel] | None = model
    path: list[str] = []
    for part in parts:
        if current is None:
            return None  # a scalar field has no sub-fields
        fields = {k.lower(): (k, f) for k, f in current.model_fields.items()}
        if current is not model and len(path) == 1:
            part = RENAMED.get(path[0], {}).get(part, part)
        if part not in fields:
            return None
        key, field = fields[part]
        path.append(key)
        current = typing.cast(type[BaseModel], field.annotation) if _is_model(field.annotation) else None
    return ".".join(path) if path else None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else "*unset*"


def render_table(model: type[BaseModel] = Settings) -> str:
    """The generated block: one table per section, with the section's docstring above it."""
    lines = [BEGIN, "", INTRO, ""]
    section = None
    for doc in iter_settings(model):
        if doc.section != section:
            section = doc.section
            title = f"**{section}**" + (f": {doc.section_doc}" if doc.section_doc else "")
            if lines[-1] != "":
                lines.append("")
            lines += [title, "", "| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
        lines.append(f"| `{doc.env}` | {_cell(doc.type)} | {_code(doc.default)} | {_cell(doc.description)} |")
    lines += ["", END]
    return "\n".join(lines)


def update_readme_text(text: str, table: str) -> str:
    """Replace the generated block, or append a Configuration section holding it."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + table + tail
    return text.rstrip("\n") + f"\n\n{HEADING}\n\n{table}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="Exit 1 if the README table is stale.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    current = args.readme.read_text(encoding="utf-8")
    wanted = update_readme_text(current, render_table())
    if wanted == current:
        logger.info("%s: configuration table is up to date", args.readme)
        return 0
    if args.check:
        logger.error("%s: configuration table is stale; run `make docs`", args.readme)
        return 1
    args.readme.write_text(wanted, encoding="utf-8")
    logger.info("%s: configuration table regenerated", args.readme)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
