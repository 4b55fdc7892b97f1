"""The form of a registered model's URI (``model.registry_uri``), checked when Settings load."""

from __future__ import annotations

import re

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (name, alias, None); ``models:/NAME/VERSION`` -> (name, None, version)."""
    m = _MODEL_URI.match(uri.strip())
    if m is None:
        raise ValueError(f"expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    return m["name"], m["alias"], m["version"]
