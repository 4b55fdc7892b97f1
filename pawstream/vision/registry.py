"""The served model from the MLflow model registry (``model.source = "registry"``).

At start-up the worker, the API and the monitor resolve ``model.registry_uri`` (by default
``models:/pawstream-classifier@champion``, the alias training's export stage moves) against the
tracking server in ``training.mlflow_tracking_uri``, download that version's serving artifact
(what export logs under ``serving_artifact/`` and registers as the version's source) into
``model.cache_dir/<name>/<version>``, and from then on read it like a local artifact. A version's
files never change, so a cached one is not downloaded again; a moved alias takes effect at the
next start (compose restarts the services; ``docker compose restart worker api monitor``).

MLflow's HTTP client retries an unreachable server with backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
about four minutes by default) before it gives up, which covers a server that is still starting.
Failures raise :class:`RegistryError` with a one-line message; the entry points exit non-zero.
:class:`RegistryUnreachable` (a subclass) says the failure was the registry's or the artifact
store's availability, not the version's: the hot reload asks again at its next poll.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pawstream.errors import PawstreamError
from pawstream.model_uri import parse_model_uri
from pawstream.vision.artifact import META_FILE, read_meta

if TYPE_CHECKING:
    from pawstream.settings import Settings

logger = logging.getLogger(__name__)


class RegistryError(PawstreamError, RuntimeError):
    """The registered model cannot be resolved or downloaded."""


class RegistryNotFound(RegistryError):
    """The registry answered: the model, alias or version the URI names does not exist."""


class RegistryUnreachable(RegistryError):
    """The registry or its artifact store did not answer (network, server restarting, I/O): transient.

    Asking again later may well succeed, unlike a version that does not exist or whose artifact
    is not a serving artifact (plain :class:`RegistryError`).
    """


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cache_target(cache_dir: Path, name: str, version: str, run_id: str | None) -> Path:
    """Where ``download_registered`` keeps version ``version`` (of run ``run_id``) of ``name``."""
    # Keyed by the version's run too: a reset or different registry reuses version numbers, and a
    # cached "version 1" from another run must not be served in its place.
    return cache_dir / name / f"{version}-{(run_id or 'norun')[:12]}"


def registered_version(uri: str, tracking_uri: str) -> tuple[str, str, str | None]:
    """(name, version, run_id) that ``uri`` names now (an alias is looked up; MLflow client, blocking)."""
    import mlflow  # slow to import: only when the registry is used
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if alias is not None:
            found = client.get_model_version_by_alias(name, alias)
        else:
            found = client.get_model_version(name, str(version))
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            hint = "register one (train with MLflow at that server) or set PAWSTREAM_MODEL__SOURCE=path"
            raise RegistryNotFound(
                f"{uri} does not exist at {tracking_uri}: {_one_line(exc)}; {hint}"
            ) from exc
        raise RegistryUnreachable(
            f"model registry at {tracking_uri} is unreachable: {_one_line(exc)}"
        ) from exc
    except OSError as exc:  # requests' connection errors are OSErrors; so is an unreadable SQLite file
        raise RegistryUnreachable(
            f"model registry at {tracking_uri} is unreachable: {_one_line(exc)}"
        ) from exc
    return name, str(found.version), found.run_id


def download_registered(uri: str, tracking_uri: str, cache_dir: Path) -> Path:
    """The local folder holding the artifact of the model version ``uri`` names (downloaded once)."""
    import mlflow  # slow to import: only when the registry is used
    from mlflow.exceptions import MlflowException

    name, version, run_id = registered_version(uri, tracking_uri)
    target = cache_target(cache_dir, name, version, run_id)
    if (target / META_FILE).is_file():
        logger.info(
            "registered model from cache", extra={"model": name, "version": version, "path": str(target)}
        )
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Download beside the target and rename: a crash mid-download never leaves a half artifact there.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=cache_dir))
    try:
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(staging), tracking_uri=tracking_uri
            )
        except (MlflowException, OSError) as exc:
            # The artifact store did not deliver (connection refused, server restarting, I/O error):
            # nothing is known about the version itself, so this is not a reason to give up on it.
            raise RegistryUnreachable(
                f"cannot download {name} version {version} from {tracking_uri}: {_one_line(exc)}"
            ) from exc
        if not any(staging.iterdir()):
            # MLflow returns an empty folder, without an error, when the store holds nothing at the
            # source (a file store not mounted, a bucket being restored): the store's state, not
            # the version's; an artifact with the wrong files is caught just below.
            raise RegistryUnreachable(
                f"cannot download {name} version {version} from {tracking_uri}: the artifact store "
                "returned no files"
            )
        try:
            read_meta(staging)  # the version's source must be a serving artifact
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"{name} version {version} at {tracking_uri} is not a serving artifact: {_one_line(exc)}"
            ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(target)
        except OSError as exc:
            # Another process (a second worker) filled the cache first: its copy is the same version.
            if not (target / META_FILE).is_file():
                raise RegistryUnreachable(
                    f"cannot store {name} version {version} in {target}: {exc}"
                ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("registered model downloaded", extra={"model": name, "version": version, "path": str(target)})
    return target


def resolve_model(settings: Settings) -> Settings:
    """``settings`` with ``model.artifact_path`` pointing at the artifact to serve.

    Unchanged for ``model.source = "path"``; for ``"registry"``, the downloaded version's folder.
    """
    model = settings.model
    if model.source == "path":
        return settings
    tracking_uri = settings.training.mlflow_tracking_uri
    path = download_registered(model.registry_uri, tracking_uri, model.cache_dir)
    meta = read_meta(path)
    logger.info(
        "serving registered model",
        extra={"uri": model.registry_uri, "model": meta.name, "version": meta.version, "path": str(path)},
    )
    # source "path" from here on: children given these settings serve this copy, not the registry.
    served = model.model_copy(update={"artifact_path": path, "source": "path"})
    return settings.model_copy(update={"model": served})
