"""The `pawstream` command line. Each command builds Settings once and passes it down.

Implementations are imported inside the commands, so `pawstream --help` stays fast and
importing this module starts nothing.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, get_args

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from pawstream import paths
from pawstream.logs import configure_logging
from pawstream.settings import Settings, WorkerSettings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Event-driven image classification on Kafka."
)
logger = logging.getLogger("stack.cli")


def load_settings() -> Settings:
    """Settings from the environment; a bad variable is one line naming it (exit 2), not a traceback."""
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        from stack.settings_errors import settings_error_line

        typer.echo(settings_error_line(exc, os.environ), err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _version(value: bool) -> None:
    if value:
        from stack.version import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and event schema version."
        ),
    ] = False,
) -> None:
    """Event-driven image classification on Kafka."""


# The fixed value sets of options, so a wrong value is click's one-line usage error.
# An Enum because typer turns one into click's Choice; the values are producers.simulate.DRIFTS
# (not imported here: `pawstream --help` must not load numpy and PIL), kept in step by a test.
Drift = Enum("Drift", {d: d for d in ("grayscale", "blur", "rotate", "textures")}, type=str)  # type: ignore[misc]
RUNTIMES: tuple[str, ...] = get_args(WorkerSettings.model_fields["runtime"].annotation)


@app.command()
def broker(
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: settings broker.port).")
    ] = None,
) -> None:
    """Run the embedded local Kafka-compatible broker (Tansu) until Ctrl-C or SIGTERM."""
    from stack.broker_cli import run_broker

    run_broker(load_settings(), port)


@app.command()
def worker() -> None:
    """Run a Faust worker: images topic -> micro-batched inference -> predictions topic."""
    from stream.worker.main import run_worker

    raise typer.Exit(run_worker(load_settings()))


@app.command()
def publish(
    targets: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) and http(s) URLs.")],
    by_reference: Annotated[
        bool,
        typer.Option("--by-reference/--inline", help="Send file:// or http(s) references instead of bytes."),
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Publish at most this many images.")] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Images per second (default: as fast as acks allow).")
    ] = None,
    ids_out: Annotated[
        Path | None, typer.Option(help="Write one published id per line to this file.")
    ] = None,
    source: Annotated[str, typer.Option(help="Source tag stored in each event.")] = "cli",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON document (published ids, failures, seconds) instead of the ids."
        ),
    ] = False,
) -> None:
    """Publish images to the images topic; an image counts as published once the broker acks it."""
    from producers.publish_cli import run_publish

    raise typer.Exit(
        run_publish(
            load_settings(),
            targets,
            by_reference=by_reference,
            limit=limit,
            rate=rate,
            ids_out=ids_out,
            source=source,
            as_json=as_json,
        )
    )


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: settings api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: settings api.port).")] = None,
) -> None:
    """Run the HTTP API: publish images, look up and wait for results, send feedback."""
    from api.server import run_api

    raise typer.Exit(run_api(load_settings(), host=host, port=port))


@app.command()
def monitor() -> None:
    """Run the monitor: join feedback to predictions, windowed accuracy, drift, alerts, metrics."""
    from stream.monitor.main import run_monitor

    raise typer.Exit(run_monitor(load_settings()))


@app.command()
def simulate(
    data: Annotated[
        Path, typer.Argument(help="Labelled photos: one sub-folder per class (e.g. cat/, dog/).")
    ],
    count: Annotated[int, typer.Option(min=1, help="Clean images to replay before any drift phase.")] = 500,
    rate: Annotated[float, typer.Option(min=0.01, help="Images per second.")] = 10.0,
    label_delay: Annotated[
        float, typer.Option(min=0, help="Mean label delay in seconds (exponential).")
    ] = 5.0,
    label_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share of images that get feedback.")
    ] = 1.0,
    wrong_labels: Annotated[
        float, typer.Option(min=0, max=1, help="Share of feedback with a wrong label.")
    ] = 0.0,
    drift: Annotated[
        Drift | None,
        typer.Option(help="Drift phase after the clean one."),
    ] = None,
    drift_count: Annotated[int, typer.Option(min=1, help="Images in the drift phase.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed for order, delays and label noise.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Also print the report as one JSON document on stdout.")
    ] = False,
) -> None:
    """Replay labelled photos with feedback at a rate and label delay, optionally with a drift phase."""
    from producers.simulate import SimulationPlan, run_simulate

    plan = SimulationPlan(
        data=data,
        count=count,
        rate=rate,
        label_delay_s=label_delay,
        label_fraction=label_fraction,
        wrong_labels=wrong_labels,
        drift=drift.value if drift else None,
        drift_count=drift_count,
        seed=seed,
    )
    raise typer.Exit(run_simulate(load_settings(), plan, as_json=as_json))


@app.command("replay-deadletters")
def replay_deadletters(
    reason: Annotated[
        list[str] | None, typer.Option(help="Only these reasons (repeatable): schema, reference, decode, ...")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Count what would be replayed; send nothing.")] = False,
) -> None:
    """Re-publish dead-lettered images (their original payloads) to the images topic."""
    import asyncio

    from rich.console import Console

    from pawstream.schemas import DeadLetterReason
    from producers.replay import replay_deadletters as replay

    try:
        reasons = {DeadLetterReason(r) for r in reason} if reason else None
    except ValueError as exc:
        raise typer.BadParameter(
            f"{exc}; choose from {', '.join(r.value for r in DeadLetterReason)}"
        ) from exc
    report = asyncio.run(replay(load_settings(), reasons, dry_run=dry_run))
    verb = "would replay" if dry_run else "replayed"
    Console(stderr=True).print(
        f"{verb} {sum(report.replayed.values())} {dict(report.replayed)}; "
        f"skipped {sum(report.skipped.values())} (payload not kept) {dict(report.skipped)}"
    )


@app.command()
def up(
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: settings services.workers).")
    ] = None,
) -> None:
    """Run the local stack (broker, worker(s), API, monitor) until Ctrl-C; crashed services restart."""
    from stack.up import run_up

    raise typer.Exit(run_up(load_settings(), workers=workers))


@app.command()
def demo(
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of <label>/ photo folders (default: settings demo.data_dir)."),
    ] = None,
    sample: Annotated[
        int | None, typer.Option(min=1, help="Photos to send, balanced (default: settings demo.sample).")
    ] = None,
    keep_running: Annotated[
        bool, typer.Option(help="Leave the services up after the summary, until Ctrl-C.")
    ] = False,
    train: Annotated[
        bool, typer.Option(help="Run `dvc repro` when no trained model exists (else fail).")
    ] = True,
) -> None:
    """Start the stack, classify a sample of photos with feedback, show live results and accuracy."""
    from stack.demo.main import run_demo

    settings = load_settings()
    raise typer.Exit(run_demo(settings, data=data, sample=sample, keep_running=keep_running, train=train))


def _runtime_list(value: str) -> str:
    unknown = [r.strip() for r in value.split(",") if r.strip() and r.strip() not in RUNTIMES]
    if unknown:
        raise typer.BadParameter(f"unknown runtime {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    return value


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option(help="Smoke-test sizes (under a minute); numbers not meaningful.")
    ] = False,
    images: Annotated[
        int | None, typer.Option(min=1, help="Photos in the pipeline's max-throughput run (default 600).")
    ] = None,
    artifact: Annotated[
        Path | None, typer.Option(help="Model artifact (default: settings model.artifact_path).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Results folder (JSON, PNG, Markdown).")] = Path("bench/results"),
    photos: Annotated[
        Path, typer.Option(help="Folder of photos (generated images when absent).")
    ] = paths.PHOTOS,
    runtimes: Annotated[
        str,
        typer.Option(
            callback=_runtime_list,
            help=f"Comma-separated runtimes to compare with fp32, from: {','.join(RUNTIMES)}.",
        ),
    ] = "bf16,onnx,int8,openvino-bf16",
) -> None:
    """Benchmark model-only, pipeline and a per-request HTTP baseline in one run; write JSON + plot."""
    from bench.run import BenchOptions, run_bench

    options = BenchOptions(
        quick=quick,
        images=images,
        artifact=artifact,
        out=out,
        photos=photos,
        runtimes=("fp32", *[r.strip() for r in runtimes.split(",") if r.strip()]),
    )
    run_bench(load_settings(), options)


@app.command("bench-lifecycle")
def bench_lifecycle(
    images: Annotated[int, typer.Option(min=20, help="Images in each backlog the workers drain.")] = 600,
    size: Annotated[int, typer.Option(min=32, help="Input size (px) of the two random-weight models.")] = 224,
    poll_s: Annotated[float, typer.Option(min=0.1, help="worker.model_poll_s during the run.")] = 1.0,
    out: Annotated[Path, typer.Option(help="Results folder (lifecycle.json, lifecycle.md).")] = Path(
        "bench/results"
    ),
    photos: Annotated[
        Path, typer.Option(help="Folder of photos (generated images when absent).")
    ] = paths.PHOTOS,
) -> None:
    """Hot reload's throughput dip and peak RSS, and the shadow challenger's cost, in one run."""
    from bench.model_lifecycle import LifecycleOptions, run_bench_lifecycle

    options = LifecycleOptions(images=images, size=size, poll_s=poll_s, photos=photos, out=out)
    run_bench_lifecycle(load_settings(), options)


data_app = typer.Typer(no_args_is_help=True, help="Get the labelled photos training and the demo read.")
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(
    dest: Annotated[
        Path | None,
        typer.Argument(help="Folder to create (default: params.yaml prepare.source, where training reads)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="Archive to download: http(s):// or file:// (default: the Microsoft Research release)."
        ),
    ] = None,
    sha256: Annotated[
        str | None, typer.Option(help="Expected sha256 of the archive; a mismatch stops the run.")
    ] = None,
    from_folder: Annotated[
        Path | None,
        typer.Option(help="Take the photos from this folder (<label>/ or PetImages/Cat, PetImages/Dog)."),
    ] = None,
    keep_archive: Annotated[bool, typer.Option(help="Keep the downloaded archive in var/downloads.")] = False,
) -> None:
    """Download the Kaggle "Dogs vs. Cats" photos (Microsoft Research release, ~800 MB) into <label>/."""
    from stack.data_cli import run_data_fetch

    raise typer.Exit(
        run_data_fetch(
            load_settings(), dest, url=url, sha256=sha256, from_folder=from_folder, keep_archive=keep_archive
        )
    )


@app.command()
def predict(
    files: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for all answers after publishing.")
    ] = 60.0,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON document {ok, results} instead of a table."),
    ] = False,
) -> None:
    """Classify files through Kafka (needs a broker and a worker) and print each one's label or failure.

    Exits 1 when any file was dead-lettered, refused or timed out.
    """
    from stack.predict import run_predict

    raise typer.Exit(run_predict(load_settings(), files, timeout_s=timeout, as_json=as_json))


@app.command()
def tail(
    topic: Annotated[
        str,
        typer.Argument(
            help="A topic name (pawstream.predictions) or a short name: "
            "images, predictions, deadletters, feedback, monitoring."
        ),
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record, not at new ones.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many records.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines: one object per record, with partition and offset.")
    ] = False,
) -> None:
    """Print a topic's events decoded, one per line, until --limit records or Ctrl-C."""
    from stack.tail import run_tail

    raise typer.Exit(
        run_tail(load_settings(), topic, from_beginning=from_beginning, limit=limit, as_json=as_json)
    )


@app.command()
def smoke(
    api: Annotated[
        str | None, typer.Option(help="Base URL of the deployed API, e.g. http://localhost:8000.")
    ] = None,
    metrics: Annotated[
        list[str] | None, typer.Option(help="A /metrics URL that must answer Prometheus text (repeatable).")
    ] = None,
    photo: Annotated[Path | None, typer.Option(help="Photo to classify (default: a generated JPEG).")] = None,
    expect_label: Annotated[str | None, typer.Option(help="The label the photo must get.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds for the whole test's waits.")] = 60.0,
    api_key: Annotated[
        str | None, typer.Option(help="X-API-Key for writes (default: settings api.api_key).")
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Start the local stack (`pawstream up`), test it, stop it.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document {ok, api, steps} on stdout.")
    ] = False,
) -> None:
    """Smoke-test a running stack through its HTTP API: classify, look up, feedback, monitoring, metrics.

    Prints each step with ok/FAIL and its time; exits 1 naming the first failing step.
    """
    settings = load_settings()
    if local:
        from stack.smoke_local import run_smoke_local

        raise typer.Exit(
            run_smoke_local(
                settings, photo=photo, expect_label=expect_label, timeout_s=timeout, as_json=as_json
            )
        )
    if api is None:
        raise typer.BadParameter("give --api URL (a deployed stack) or --local", param_hint="--api")
    from stack.smoke import SmokeOptions, run_smoke

    key = api_key or (settings.api.api_key.get_secret_value() if settings.api.api_key else None)
    options = SmokeOptions(
        api=api,
        metrics=metrics or [],
        photo=photo,
        expect_label=expect_label,
        timeout_s=timeout,
        api_key=key,
    )
    raise typer.Exit(run_smoke(options, as_json=as_json))


model_app = typer.Typer(no_args_is_help=True, help="The registered model versions and their aliases.")
app.add_typer(model_app, name="model")


@model_app.command("list")
def model_list(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document {model, versions}.")
    ] = False,
) -> None:
    """Registered versions, newest first: aliases, arch, test metrics, data hash, run id."""
    from stack.model_cli import run_model_list

    raise typer.Exit(run_model_list(load_settings(), as_json=as_json))


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="The registered version number to move the alias to.")],
    alias: Annotated[str, typer.Option(help="The alias to move.")] = "champion",
    guarded: Annotated[
        bool,
        typer.Option(
            "--guarded",
            help="Refuse when the monitor's feedback accuracy says VERSION is worse than the alias's.",
        ),
    ] = False,
    min_labels: Annotated[
        int | None, typer.Option(min=1, help="Labelled events each version needs (default: settings).")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(min=0, max=1, help="Accuracy VERSION may lose (default: settings).")
    ] = None,
    monitor: Annotated[
        str | None, typer.Option(help="The monitor's /metrics URL (default: settings api.monitoring_url).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote without first checking that VERSION downloads, loads and warms up (and, "
            "with --guarded, even with too few labels).",
        ),
    ] = False,
) -> None:
    """Move an alias to VERSION and print from -> to; exits 1 with one line when refused.

    VERSION is first downloaded, loaded and warmed up as a worker would (refused if that fails).
    --guarded compares cumulative feedback accuracy per version from the monitor; an alias no
    version holds yet has nothing to compare against and is set.
    """
    from stack.model_cli import GuardOptions, monitor_url, run_model_promote

    settings = load_settings()
    guard = None
    if guarded:
        guard = GuardOptions(
            min_labels=min_labels or settings.model.promote_min_labels,
            margin=settings.model.promote_margin if margin is None else margin,
            monitor_url=monitor or monitor_url(settings),
            force=force,
        )
    raise typer.Exit(run_model_promote(settings, version, alias=alias, guard=guard, check_load=not force))


labels_app = typer.Typer(no_args_is_help=True, help="Feedback labels as training data.")
app.add_typer(labels_app, name="labels")


@labels_app.command("export")
def labels_export(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write <label>/<id>.jpg and manifest.csv into.")
    ],
) -> None:
    """Every image with feedback whose bytes can still be had, with a manifest; the rest listed."""
    from stack.labels_export import run_labels_export

    raise typer.Exit(run_labels_export(load_settings(), out))


@app.command()
def retrain(
    repo: Annotated[Path, typer.Option(help="The DVC pipeline's repo (dvc.yaml, params.yaml).")] = Path("."),
) -> None:
    """Labels export into prepare.extra_data, `dvc repro`, the new version as @challenger (never promoted)."""
    from stack.retrain import run_retrain

    raise typer.Exit(run_retrain(load_settings(), repo))


if __name__ == "__main__":  # pragma: no cover
    app()
