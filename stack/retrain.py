"""`pawstream retrain`: feedback labels -> a new data version -> a new model version as @challenger.

Three steps, each printed as a ``retrain: step N/3 ...`` line (the page's retrain job shows them):
1. `labels export` into the repo's ``prepare.extra_data`` folder (params.yaml);
2. `dvc repro` in the repo, its stages run with ``training.register_alias=challenger``, so the
   export stage registers the new version with alias ``challenger`` and never moves ``champion``,
   and with ``training.export_dir=models/challenger``, so the new artifact is written there and the
   served folder (models/pawstream-classifier, what model.source=path loads) stays byte-identical:
   a restart never serves an unpromoted model;
3. a check that the registry's ``challenger`` is the version the artifact was stamped with.

It never promotes: `pawstream model promote VERSION` is the separate, explicit step. When nothing
changed (no new labels, same code and params) DVC runs nothing and no version is registered.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

from pawstream import paths
from pawstream.errors import PawstreamError
from pawstream.settings import Settings, to_env
from stack.labels_export import ExportError, run_labels_export

logger = logging.getLogger(__name__)

STEPS = 3
RAN = "Running stage '"
CHALLENGER_DIR = Path("models/challenger")  # git-ignored like every models/ folder


def _say(text: str) -> None:
    sys.stdout.write(f"retrain: {text}\n")
    sys.stdout.flush()


class NoExtraData(PawstreamError, ValueError):
    """params.yaml names no prepare.extra_data: the pipeline would never read the exported labels."""


def extra_data_dir(repo: Path) -> Path:
    params = yaml.safe_load((repo / "params.yaml").read_text()) or {}
    extra = (params.get("prepare") or {}).get("extra_data")
    if not extra:
        # Exporting to a default folder the pipeline does not read would "succeed" without the labels.
        raise NoExtraData(
            f"{repo / 'params.yaml'} has no prepare.extra_data, so the pipeline would not read the "
            f"labels: set it (e.g. `extra_data: {paths.FEEDBACK}`) and list it in dvc.yaml's prepare deps"
        )
    path = Path(extra)
    return path if path.is_absolute() else repo / path


def _dvc_repro(settings: Settings, repo: Path) -> tuple[int, list[str]]:
    """`dvc repro` in ``repo``, its output passed through; (exit code, stages that ran)."""
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        **to_env(settings),
        "PAWSTREAM_TRAINING__REGISTER_ALIAS": "challenger",
        "PAWSTREAM_TRAINING__EXPORT_DIR": str(repo / CHALLENGER_DIR),
        # The stages run `python` from PATH: this interpreter's environment.
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ran: list[str] = []
    with subprocess.Popen(
        [str(bindir / "dvc"), "repro"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if RAN in line:
                ran.append(line.split(RAN, 1)[1].split("'", 1)[0])
        code = proc.wait()
    return code, ran


def _challenger(settings: Settings) -> str | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = settings.training.mlflow_tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return str(
            client.get_model_version_by_alias(settings.training.registered_model, "challenger").version
        )
    except MlflowException:
        return None


def run_retrain(settings: Settings, repo: Path) -> int:
    repo = repo.resolve()
    if not (repo / "dvc.yaml").is_file():
        sys.stderr.write(f"retrain: {repo} has no dvc.yaml (give the pipeline's repo with --repo)\n")
        return 2
    if not (repo / paths.ARTIFACT / "artifact.json").is_file():
        # The export stage's DVC output is the served folder: without one there is nothing to
        # retrain from, and a retrain must not be what creates the served model.
        sys.stderr.write(
            f"retrain: no trained model at {repo / paths.ARTIFACT}; train one first with `dvc repro`\n"
        )
        return 2
    try:
        out = extra_data_dir(repo)
    except (NoExtraData, OSError, yaml.YAMLError) as exc:
        sys.stderr.write(f"retrain: {exc}\n")
        return 2
    _say(f"step 1/{STEPS} labels export into {out}")
    try:
        code = run_labels_export(settings, out)
    except (ExportError, OSError) as exc:
        sys.stderr.write(f"retrain: labels export failed: {exc}\n")
        return 1
    if code != 0:
        return code
    _say(f"step 2/{STEPS} dvc repro in {repo}")
    code, ran = _dvc_repro(settings, repo)
    if code != 0:
        sys.stderr.write(f"retrain: dvc repro failed (exit {code})\n")
        return 1
    _say(f"step 3/{STEPS} registry check")
    if "export" not in ran:
        _say("nothing changed (no new labels, code or params): no new version registered")
        return 0
    meta = json.loads((repo / CHALLENGER_DIR / "artifact.json").read_text())
    version = str(meta["version"])
    challenger = _challenger(settings)
    if challenger != version:
        sys.stderr.write(f"retrain: the new version {version} is not @challenger ({challenger})\n")
        return 1
    name = settings.training.registered_model
    _say(
        f"done: {name} version {version} registered as @challenger, data hash {meta.get('data_hash')}, "
        f"artifact in {repo / CHALLENGER_DIR} (the served one is unchanged); "
        f"promote it with `pawstream model promote {version}`"
    )
    logger.info("retrained", extra={"version": version, "data_hash": meta.get("data_hash"), "stages": ran})
    return 0
