"""`pawstream model list` and `pawstream model promote`: the registered versions and their aliases.

Both talk to the MLflow registry at ``training.mlflow_tracking_uri`` about
``training.registered_model``. A version's arch, data hash and test accuracy are the tags training's
export stage puts on it; the other test metrics (``test_*``) are the ones evaluate logs in the run.

Guarded promotion compares feedback accuracy as the monitor measured it. The monitor labels every
figure with the ``version`` of the artifact that made the prediction (``PredictionEvent.model``),
and export stamps the registry version number into that artifact's meta, so the monitor's
``model_version="3"`` is registry version 3. (An artifact registered some other way, e.g.
training.smoke_model, keeps the version string it was built with and has no figures under its number:
guarded promotion then refuses it for too few labels.)

Which figures: the monitor's side-by-side view (``models`` in its summary, the
``pawstream_monitor_model_*`` gauges with ``role`` and ``version``). The challenger is judged by
its shadow figures (role ``challenger``: scored on the same live images as the champion), the
champion by its served ones (role ``champion``); these cover different images and spans, so the
paired figures (the same labelled images predicted by both) come first when there are enough
(see :func:`guard_refusal`). A version without figures in that role falls
back to the other role's, then to the champion-only ``model_version`` figures an older monitor
exports, so a version that already served, or a monitor without the view, still counts.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.table import Table

from api.monitor_provider import summary_from_metrics
from pawstream.settings import Settings, TrainingSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: list[str]
    arch: str | None
    created: str  # ISO 8601, UTC
    metrics: dict[str, float]  # test metrics: test_accuracy, test_ece, ...
    data_hash: str | None
    run_id: str | None


@dataclass(frozen=True)
class GuardOptions:
    min_labels: int
    margin: float
    monitor_url: str
    force: bool = False


def _client(training: TrainingSettings) -> MlflowClient:
    import mlflow  # slow to import: only when a model command runs

    uri = training.mlflow_tracking_uri
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")


def list_versions(training: TrainingSettings) -> list[VersionInfo]:
    """Every registered version of ``training.registered_model``, newest first."""
    from mlflow.exceptions import MlflowException

    client = _client(training)
    name = training.registered_model
    try:
        aliases_of: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases_of.setdefault(str(version), []).append(alias)
    except MlflowException as exc:
        if _missing(exc):
            return []
        raise
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        tags = dict(mv.tags or {})
        run_metrics: dict[str, float] = {}
        run_tags: dict[str, str] = {}
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
                run_metrics, run_tags = dict(run.data.metrics), dict(run.data.tags)
            except MlflowException:
                pass  # a deleted run: the version's own tags still say what they say
        metrics = {k: v for k, v in run_metrics.items() if k.startswith("test_")}
        if "test_accuracy" not in metrics and "test_accuracy" in tags:
            metrics["test_accuracy"] = float(tags["test_accuracy"])
        created = datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, tz=UTC)
        rows.append(
            VersionInfo(
                version=str(mv.version),
                aliases=sorted(aliases_of.get(str(mv.version), [])),
                arch=tags.get("arch") or run_tags.get("arch"),
                created=created.isoformat(timespec="seconds"),
                metrics=dict(sorted(metrics.items())),
                data_hash=tags.get("data_hash") or run_tags.get("data_hash"),
                run_id=mv.run_id,
            )
        )
    return sorted(rows, key=lambda r: int(r.version) if r.version.isdigit() else -1, reverse=True)


def _table(rows: list[VersionInfo]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("version", "aliases", "arch", "created", "test metrics", "data hash", "run id"):
        table.add_column(column)
    for r in rows:
        metrics = " ".join(f"{k.removeprefix('test_')}={v:.4f}" for k, v in r.metrics.items())
        table.add_row(
            r.version,
            ",".join(r.aliases) or "-",
            r.arch or "-",
            r.created,
            metrics or "-",
            (r.data_hash or "-")[:19],  # "sha256:" + 12 hex digits tell versions apart
            (r.run_id or "-")[:12],
        )
    return table


def run_model_list(settings: Settings, *, as_json: bool) -> int:
    from mlflow.exceptions import MlflowException

    training = settings.training
    try:
        rows = list_versions(training)
    except MlflowException as exc:
        sys.stderr.write(f"model registry at {training.mlflow_tracking_uri}: {_one_line(exc)}\n")
        return 1
    if as_json:
        doc = {"model": training.registered_model, "versions": [asdict(r) for r in rows]}
        sys.stdout.write(json.dumps(doc) + "\n")
    elif not rows:
        sys.stderr.write(
            f"no registered versions of {training.registered_model} at {training.mlflow_tracking_uri}\n"
        )
    else:
        Console().print(_table(rows))
    return 0


def monitor_url(settings: Settings) -> str:
    """Where the monitor's Prometheus page is: what GET /v1/monitoring reads too."""
    return settings.api.monitoring_url or f"http://127.0.0.1:{settings.monitoring.metrics_port}/metrics"


def _figures(summary: dict[str, Any], version: str, role: str) -> tuple[float | None, int]:
    """(cumulative feedback accuracy, labelled events) the monitor reports for ``version`` in
    ``role``, else in the other role, else in its champion-only per-version figures."""
    by_pair = {(m["role"], m["version"]): m for m in summary.get("models", [])}
    other = "champion" if role == "challenger" else "challenger"
    figures = by_pair.get((role, version)) or by_pair.get((other, version))
    if figures is None or not figures.get("labelled"):
        figures = summary["versions"].get(version, figures or {})
    accuracy = figures.get("cumulative_accuracy")
    labelled = figures.get("labelled") or 0
    if accuracy is not None and math.isnan(accuracy):
        accuracy = None
    return accuracy, int(labelled)


def guard_refusal(metrics_text: str, challenger: str, champion: str, options: GuardOptions) -> str | None:
    """Why promoting ``challenger`` over ``champion`` is refused, or None when it may go ahead.

    Paired figures first: when the monitor has at least ``min_labels`` labelled images that both
    versions predicted (``challenger`` shadowing ``champion``; stream/monitor/paired.py), their
    accuracies on exactly those images are compared. Otherwise the cumulative figures, which do
    not cover the same images or span: the challenger's are its shadow predictions (the batches
    it shadowed within the budget, since the monitor started or the version began shadowing,
    whichever is later), the champion's every labelled image it served since the monitor
    started; the label minimum applies to each.
    """
    summary = summary_from_metrics(metrics_text)
    paired = next(
        (
            p
            for p in summary.get("pairs", [])
            if (p["champion_version"], p["challenger_version"]) == (champion, challenger)
        ),
        None,
    )
    if paired is not None and paired["labelled"] >= options.min_labels:
        # The same labelled images, scored by both: the comparison the guard is for.
        n = int(paired["labelled"])
        ch_acc, cur_acc = paired["challenger_correct"] / n, paired["champion_correct"] / n
        if ch_acc < cur_acc - options.margin:
            return (
                f"version {challenger} feedback accuracy {ch_acc:.4f} is below champion version "
                f"{champion}'s {cur_acc:.4f} on the same {n} labelled images by more than {options.margin:g}"
            )
        return None
    ch_acc, ch_n = _figures(summary, challenger, "challenger")
    cur_acc, cur_n = _figures(summary, champion, "champion")
    for who, version, n in (("challenger", challenger, ch_n), ("champion", champion, cur_n)):
        if n < options.min_labels and not options.force:
            return (
                f"{who} version {version} has {n} labelled events at the monitor, fewer than "
                f"{options.min_labels} (--min-labels); --force promotes anyway"
            )
    if ch_acc is None or cur_acc is None:
        return None  # forced with no figures to compare: nothing left to refuse on
    if ch_acc < cur_acc - options.margin:
        return (
            f"version {challenger} feedback accuracy {ch_acc:.4f} ({ch_n} labels) is below champion "
            f"version {champion}'s {cur_acc:.4f} ({cur_n} labels) by more than {options.margin:g}"
        )
    return None


def _read_monitor(url: str) -> str:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.text


def load_refusal(settings: Settings, version: str) -> str | None:
    """Why ``version`` cannot serve (download, artifact, load or warm-up failed), or None.

    What a worker does with a version its alias names, with the worker's own settings (runtime,
    thread count, limits): a version that fails here would be refused by running workers and
    crash-loop any worker that starts with it. Downloaded to a temporary folder, removed after.
    """
    import tempfile
    from pathlib import Path

    from pawstream.vision.registry import RegistryError, RegistryUnreachable, download_registered
    from stream.worker.model_reload import load_predictor

    training = settings.training
    uri = f"models:/{training.registered_model}/{version}"
    with tempfile.TemporaryDirectory(prefix="pawstream-promote-") as tmp:
        try:
            path = download_registered(uri, training.mlflow_tracking_uri, Path(tmp))
        except RegistryUnreachable as exc:
            return f"version {version} could not be downloaded to check that it loads ({exc})"
        except RegistryError as exc:
            return f"version {version} is not a serving artifact ({exc})"
        try:
            predictor = load_predictor(settings, path)
        except Exception as exc:  # whatever the worker would die of
            return f"version {version} does not load and warm up: {type(exc).__name__}: {_one_line(exc)}"
        logger.info("version loads", extra={"version": version, "model": predictor.model_info.version})
        del predictor
    return None


def run_model_promote(
    settings: Settings, version: str, *, alias: str, guard: GuardOptions | None, check_load: bool = True
) -> int:
    """Move ``alias`` to ``version``; prints ``alias: from -> to``. 1 with one line when refused.

    Unless ``check_load`` is False (--force), the version is first downloaded, loaded and warmed
    up as a worker would (:func:`load_refusal`), and refused when that fails.
    """
    from mlflow.exceptions import MlflowException

    training = settings.training
    name = training.registered_model
    client = _client(training)
    try:
        target = client.get_model_version(name, version)
    except MlflowException as exc:
        if _missing(exc):
            sys.stderr.write(f"{name} has no version {version} at {training.mlflow_tracking_uri}\n")
        else:
            sys.stderr.write(f"model registry at {training.mlflow_tracking_uri}: {_one_line(exc)}\n")
        return 1
    to = str(target.version)
    try:
        current: str | None = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if not _missing(exc):
            sys.stderr.write(f"model registry at {training.mlflow_tracking_uri}: {_one_line(exc)}\n")
            return 1
        current = None
    if current == to:
        sys.stdout.write(f"{name}@{alias} is already version {to}\n")
        return 0
    if guard is not None and current is not None:
        try:
            text = _read_monitor(guard.monitor_url)
        except httpx.HTTPError as exc:
            sys.stderr.write(
                f"refused: the monitor's metrics at {guard.monitor_url} could not be read "
                f"({type(exc).__name__}); guarded promotion needs them\n"
            )
            return 1
        reason = guard_refusal(text, to, current, guard)
        if reason is not None:
            sys.stderr.write(f"refused: {reason}\n")
            return 1
    if check_load:
        reason = load_refusal(settings, to)
        if reason is not None:
            sys.stderr.write(f"refused: {reason}; workers would refuse it too; --force promotes anyway\n")
            return 1
    client.set_registered_model_alias(name, alias, to)
    logger.info("alias moved", extra={"model": name, "alias": alias, "from": current, "to": to})
    sys.stdout.write(f"{name}@{alias}: {current or '(none)'} -> {to}\n")
    return 0
