"""Readers for the deployment files: YAML 1.2 (as Compose and GitHub read it), compose-style
``${VAR}`` interpolation, ``.env`` files, and the JSON schemas vendored in check-jsonschema."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DOCKERFILE = ROOT / "Dockerfile"


def load_yaml(path: Path) -> Any:
    # YAML 1.2, like Compose (go-yaml v3) and GitHub: `on:` stays a string key, merge keys work.
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def schema(name: str) -> dict[str, Any]:
    """A schema vendored in check-jsonschema (compose-spec, github-workflows), with its licence there."""
    ref = resources.files("check_jsonschema.builtin_schemas.vendor") / f"{name}.json"
    return json.loads(ref.read_text(encoding="utf-8"))


def schema_errors(instance: Any, schema_doc: dict[str, Any]) -> list[str]:
    # compose-spec names draft-07 with https://, which jsonschema only knows as http://.
    uri = str(schema_doc.get("$schema", "")).rstrip("#")
    uri = uri.replace("https://json-schema.org/draft-0", "http://json-schema.org/draft-0")
    cls = jsonschema.validators.validator_for({"$schema": uri}, default=jsonschema.Draft202012Validator)
    validator = cls(schema_doc, format_checker=cls.FORMAT_CHECKER)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


# ---------------------------------------------------------------------------------------------------
# compose interpolation (https://compose-spec.io, "Interpolation"), without nesting
# ---------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.S)


@dataclass(frozen=True)
class VarRef:
    name: str
    op: str | None
    arg: str | None


class InterpolationError(ValueError):
    pass


def var_refs(text: str) -> list[VarRef]:
    """Every ``${VAR...}`` / ``$VAR`` reference in a string (``$$`` escapes are not references)."""
    refs = []
    for m in _TOKEN.finditer(text):
        if m["escaped"]:
            continue
        if m["named"]:
            refs.append(VarRef(m["named"], None, None))
            continue
        b = _BRACED.match(m["braced"])
        if not b or "${" in (b["arg"] or ""):
            raise InterpolationError(f"unsupported interpolation ${{{m['braced']}}}")
        refs.append(VarRef(b["name"], b["op"], b["arg"]))
    return refs


def interpolate_str(text: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        ref = var_refs(m[0])[0]
        value = env.get(ref.name)
        if ref.op in (":-", "-"):
            unset = value is None or (ref.op == ":-" and value == "")
            return (ref.arg or "") if unset else str(value)
        if ref.op in (":?", "?"):
            if value is None or (ref.op == ":?" and value == ""):
                raise InterpolationError(f"{ref.name}: {ref.arg}")
            return value
        if ref.op in (":+", "+"):
            set_ = value is not None and (ref.op == "+" or value != "")
            return (ref.arg or "") if set_ else ""
        return value or ""

    return _TOKEN.sub(sub, text)


def interpolate(obj: Any, env: Mapping[str, str]) -> Any:
    """Compose interpolates values (not keys) after parsing the YAML."""
    if isinstance(obj, str):
        return interpolate_str(obj, env)
    if isinstance(obj, dict):
        return {k: interpolate(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate(v, env) for v in obj]
    return obj


def strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return []


# ---------------------------------------------------------------------------------------------------
# .env files
# ---------------------------------------------------------------------------------------------------
_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z_][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass
class EnvExample:
    active: dict[str, str] = field(default_factory=dict)
    commented: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set(self.active) | set(self.commented)


def read_env_example(path: Path = ENV_EXAMPLE) -> EnvExample:
    """``NAME=value`` lines are set; ``# NAME=value`` lines document a default that is left unset."""
    env = EnvExample()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _ENV_LINE.match(line.strip())
        if not m:
            continue
        value = m["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        target = env.commented if m["comment"] else env.active
        if m["name"] in env.active or m["name"] in env.commented:
            raise AssertionError(f"{path.name}: {m['name']} appears twice")
        target[m["name"]] = value
    return env
