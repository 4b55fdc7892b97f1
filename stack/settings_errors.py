"""One line for a bad setting: the environment variable, its value and the expected form.

pydantic reports a bad ``PAWSTREAM_*`` variable as a ValidationError located by field path
(``worker.micro_batch_max``), and pydantic-settings reports undecodable JSON for a list or dict
field as a SettingsError naming only the top-level section; printed raw, either is a screen of
traceback that never says which variable to fix. This maps both back to the variable name
(``PAWSTREAM_`` + path joined by ``__``, the Settings env prefix and nested delimiter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from pawstream.settings import RENAMED

PREFIX, DELIMITER = "PAWSTREAM_", "__"

# pydantic error type -> the expected form, in words a shell user acts on.
_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "list_type": 'expected a JSON list, e.g. ["a", "b"]',
    "dict_type": 'expected a JSON object, e.g. {"key": "value"}',
    "json_invalid": "expected valid JSON",
    "path_type": "expected a file system path",
}


_SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY")


def _shown(name: str, environ: Mapping[str, str]) -> str:
    """``NAME='value'``, with the value hidden for a secret (an error line may end up in a CI log)."""
    if name not in environ:
        return name
    return f"{name}=<hidden>" if _SECRET.search(name) else f"{name}={environ[name]!r}"


def env_name(loc: tuple[str | int, ...]) -> str:
    """``("worker", "micro_batch_max")`` -> ``PAWSTREAM_WORKER__MICRO_BATCH_MAX``."""
    return PREFIX + DELIMITER.join(str(part).upper() for part in loc if isinstance(part, str))


def _expected(error: Any) -> str:
    kind = error.get("type", "")
    if kind in _EXPECTED:
        return str(_EXPECTED[kind])
    if kind == "literal_error":
        return f"expected one of {error.get('ctx', {}).get('expected', '?')}"
    msg = str(error.get("msg", "invalid value"))
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    return msg[:1].lower() + msg[1:]


def _variable(loc: tuple[str | int, ...], environ: Mapping[str, str]) -> str:
    """The variable the user set for ``loc``: the current name, or a deprecated one still in use."""
    name = env_name(loc)
    if name in environ or len(loc) < 2:
        return name
    section, field = str(loc[0]), str(loc[1])
    for old, new in RENAMED.get(section, {}).items():
        if new == field and env_name((section, old)) in environ:
            return env_name((section, old))
    return name


def _validation_line(exc: ValidationError, environ: Mapping[str, str]) -> str:
    error = exc.errors()[0]
    loc = tuple(error.get("loc", ()))
    dotted = ".".join(str(p) for p in loc)
    expected = _expected(error)
    # A section-level check (e.g. the kafka timeouts): name every variable of the section.
    if len(loc) == 1 and env_name(loc) not in environ:
        names = sorted(n for n in environ if n.startswith(env_name(loc)))
        where = ", ".join(names) if names else env_name(loc) + DELIMITER + "*"
        line = f"{where}: {expected} ({dotted})"
    else:
        name = _variable(loc, environ)
        line = f"{_shown(name, environ)}: {expected} ({dotted})"
    more = exc.error_count() - 1
    return line + (f" (and {more} more)" if more else "")


def _settings_line(exc: SettingsError, environ: Mapping[str, str]) -> str:
    # 'error parsing value for field "refs" from source "EnvSettingsSource"': the field is the
    # section; the variable is whichever of that section's variables does not decode as JSON.
    found = re.search(r'field "([^"]+)"', str(exc))
    section = found.group(1) if found else ""
    candidates = sorted(n for n in environ if section and n.startswith(env_name((section,))))
    for name in candidates:
        value = environ[name].strip()
        if name == env_name((section,)) or value[:1] in "[{":
            try:
                json.loads(value)
            except ValueError:
                dotted = name[len(PREFIX) :].lower().replace(DELIMITER, ".")
                return f"{_shown(name, environ)}: expected valid JSON (a list or object) ({dotted})"
    for name in candidates:  # a list/dict field given as plain text
        try:
            json.loads(environ[name])
        except ValueError:
            dotted = name[len(PREFIX) :].lower().replace(DELIMITER, ".")
            return f'{_shown(name, environ)}: expected JSON, e.g. ["a", "b"] ({dotted})'
    return f"{env_name((section,)) if section else 'PAWSTREAM_*'}: {exc}"


def settings_error_line(exc: ValidationError | SettingsError, environ: Mapping[str, str]) -> str:
    """``error: NAME='value': expected ... (section.field)``, for a Settings() that failed."""
    if isinstance(exc, ValidationError):
        return "error: " + _validation_line(exc, environ)
    return "error: " + _settings_line(exc, environ)
