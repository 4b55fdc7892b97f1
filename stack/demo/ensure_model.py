"""Make sure a trained model artifact exists: run the DVC pipeline (`dvc repro`) when it does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from pawstream.errors import PawstreamError
from pawstream.settings import Settings
from pawstream.vision.artifact import META_FILE, ArtifactMeta, read_meta
from stack.data_fetch import training_photos


class TrainingFailed(PawstreamError, RuntimeError):
    """The demo found no artifact and could not train one (`dvc repro`)."""


def dvc_command() -> list[str]:
    """`dvc` from this interpreter's environment (the venv), whatever PATH says."""
    local = Path(sys.executable).with_name("dvc")
    return [str(local)] if local.exists() else [sys.executable, "-m", "dvc"]


def no_data_hint(settings: Settings, *, train: bool = True) -> list[str] | None:
    """Three lines saying how to get photos, when there is no model and nothing to train one on.

    Without them `dvc repro` would stop a second in with a DVC error about a missing dependency.
    """
    if not train or (settings.model.artifact_path / META_FILE).is_file():
        return None
    photos = training_photos()
    if photos.exists():
        return None
    cli = _cli_name()
    return [
        f"No trained model at {settings.model.artifact_path}, and no photos to train one: "
        f"{photos} does not exist.",
        f'Run `{cli} data fetch` (the Kaggle "Dogs vs. Cats" photos from Microsoft Research, ~800 MB), '
        f"or `{cli} data fetch --from-folder DIR` to use your own <label>/ photo folders.",
        "Then run `make demo` again.",
    ]


def _cli_name() -> str:
    """The command as the user can type it: `pawstream` when it is on PATH; otherwise the path it
    was started by (`make demo` runs `.venv/bin/pawstream`, which a fresh shell does not find)."""
    started_as = Path(sys.argv[0])
    if shutil.which("pawstream") or started_as.name != "pawstream":
        return "pawstream"
    return str(started_as)


def ensure_artifact(
    settings: Settings, console: Console, *, train: bool = True
) -> tuple[ArtifactMeta, float]:
    """The artifact's metadata and the seconds spent training (0 when it already existed)."""
    path = settings.model.artifact_path
    try:
        return read_meta(path), 0.0
    except FileNotFoundError:
        if not train:
            raise
    if not Path("dvc.yaml").is_file():
        raise TrainingFailed(
            f"no trained model at {path} and no dvc.yaml in {Path.cwd()} to train one: run the demo from "
            "the project root, or point PAWSTREAM_MODEL__ARTIFACT_PATH at an artifact"
        )
    console.rule("[bold]training")
    console.print(
        f"No trained model at [bold]{path}[/]: training one now with [bold]dvc repro[/] "
        "(prepare -> features -> train -> evaluate -> export). This runs once; later demos reuse it."
    )
    # The stages run `python -m training.*` from PATH: put this environment's bin folder first.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    # Inherit the terminal: DVC's stage lines and the stages' own progress bars show as they run.
    code = subprocess.call([*dvc_command(), "repro"], env=env)
    seconds = time.monotonic() - started
    if code != 0:
        raise TrainingFailed(
            f"`dvc repro` failed with exit code {code} after {seconds:.0f}s (see its output above)"
        )
    try:
        meta = read_meta(path)
    except FileNotFoundError as exc:
        raise TrainingFailed(f"`dvc repro` finished but wrote no artifact at {path}") from exc
    console.print(f"[green]trained[/] {meta.name} v{meta.version} ({meta.arch}) in {seconds / 60:.1f} min")
    return meta, seconds
