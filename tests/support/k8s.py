"""Offline checks of deploy/k8s: `kubectl kustomize` builds, Kubernetes schemas from the
kubernetes-validate package (pinned version), and the KEDA and Strimzi CRD schemas vendored in
tests/deploy/data/crds (source, version and licence in the README there)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from tests.support.deploy import ROOT

K8S_DIR = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
CRD_DIR = ROOT / "tests" / "deploy" / "data" / "crds"
# A recent Kubernetes release the manifests must be valid for (its schemas ship in kubernetes-validate).
KUBERNETES_VERSION = "1.35.0"


# kubectl 1.21 is the first to embed kustomize v4 (components, patches with targets); Debian 12's
# kubernetes-client (1.20.2) embeds v2 and fails on these kustomizations.
KUBECTL_MIN_MINOR = 21


@cache
def kubectl() -> str:
    """kubectl, or a skip when there is none or it is too old to build deploy/k8s (never a failure)."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl not installed: `kubectl kustomize` builds deploy/k8s")
    result = subprocess.run(
        [path, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        minor = int(json.loads(result.stdout)["clientVersion"]["minor"].rstrip("+"))
    except (ValueError, KeyError, TypeError):
        pytest.skip(f"cannot tell kubectl's version: {result.stdout[:200]!r} {result.stderr[:200]!r}")
    if minor < KUBECTL_MIN_MINOR:
        pytest.skip(
            f"kubectl 1.{minor} embeds a kustomize too old for deploy/k8s (needs 1.{KUBECTL_MIN_MINOR}+)"
        )
    return path


def build(path: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize path` prints."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in YAML(typ="safe", pure=True).load_all(result.stdout) if doc]


def build_with_component(tmp_path: Path, overlay: str, component: str) -> list[dict[str, Any]]:
    """An overlay plus a component, as a user's own kustomization would add it (relative paths only)."""
    kustomization = tmp_path / "kustomization.yaml"
    rel = os.path.relpath(K8S_DIR, tmp_path)
    kustomization.write_text(
        f"resources:\n  - {rel}/overlays/{overlay}\ncomponents:\n  - {rel}/components/{component}\n",
        encoding="utf-8",
    )
    return build(tmp_path)


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = find(objects, kind, name)
    return found


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, container) pairs."""
    for d in find(objects, "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            yield d, c


# ---------------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------------
def kubernetes_errors(obj: dict[str, Any]) -> list[str]:
    """Errors of a built-in object against the pinned Kubernetes version's strict schema."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # The package raises at the first error, as a copy of jsonschema's.
        return [f"{'/'.join(map(str, exc.absolute_path)) or '<root>'}: {exc.message}"]
    return []


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused, as the API server's strict field validation (kubectl's
    default) refuses them: objects that list properties and allow nothing else."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the served version's openAPIV3Schema, closed to unknown fields."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # metadata is the API server's ObjectMeta, not described by the CRD.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = _closed(schema)
    return schemas


def crd_errors(obj: dict[str, Any]) -> list[str]:
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"no vendored CRD for {obj['apiVersion']} {obj['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


def is_builtin(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return group == "" or group.endswith(".k8s.io") or group in {"apps", "batch", "autoscaling", "policy"}


def errors(obj: dict[str, Any]) -> list[str]:
    return kubernetes_errors(obj) if is_builtin(obj) else crd_errors(obj)


def env_of(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's literal environment: its ConfigMaps' and Secrets' data, then its own env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        elif "secretRef" in source:
            for secret in find(objects, "Secret", source["secretRef"]["name"]):
                env.update({k: "<secret>" for k in secret.get("data", {})})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env
