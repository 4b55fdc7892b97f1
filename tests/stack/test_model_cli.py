"""`pawstream model list` / `promote` against a real MLflow registry (SQLite in tmp_path).

Guarded promotion reads a real HTTP server on 127.0.0.1 serving the Prometheus page of the
monitor's own metrics class (stream.monitor.monitor_metrics.MonitorMetrics), filled with the
per-version label counts and accuracies a test wants.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from pawstream.settings import TrainingSettings
from stack.cli import app
from stream.monitor.monitor_metrics import MonitorMetrics
from tests.support.artifacts import make_artifact
from tests.support.lifecycle import corrupt_copy, move_alias
from tests.support.registry import NAME, register_version, training_settings


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("model-cli")
    return make_artifact(root / "v1", seed=1), make_artifact(root / "v2", seed=2)


@pytest.fixture
def registry(
    tmp_path: Path, artifacts: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> TrainingSettings:
    """Version 1 the champion, version 2 registered without an alias (below the bar)."""
    training = training_settings(tmp_path)
    first, second = artifacts
    tags = {"arch": "resnet18", "test_accuracy": "0.9100"}
    assert (
        register_version(
            training,
            first,
            accuracy=0.91,
            metrics={"test_ece": 0.05},
            tags={**tags, "data_hash": "sha256:aaaa1111"},
        )
        == "1"
    )
    assert (
        register_version(
            training,
            second,
            accuracy=0.42,
            tags={**tags, "data_hash": "sha256:bbbb2222", "test_accuracy": "0.4200"},
        )
        == "2"
    )
    monkeypatch.setenv("PAWSTREAM_TRAINING__MLFLOW_TRACKING_URI", training.mlflow_tracking_uri)
    monkeypatch.setenv("PAWSTREAM_TRAINING__REGISTERED_MODEL", NAME)
    return training


def _champion(training: TrainingSettings) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=training.mlflow_tracking_uri)
    return str(client.get_model_version_by_alias(NAME, "champion").version)


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """The CLI points the root logger at the runner's stderr, which closes after each invoke."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def _run(*args: str) -> tuple[int, str, str]:
    # Wide enough that the table's cells are not cut to fit an 80-column terminal.
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@dataclass(frozen=True)
class Monitor:
    metrics: MonitorMetrics
    url: str


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    """The monitor's metrics, served at ``monitor.url`` while the test runs."""
    metrics = MonitorMetrics()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(metrics.registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Monitor(metrics, f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _feedback(monitor: Monitor, version: str, labelled: int, accuracy: float) -> None:
    metrics = monitor.metrics
    metrics.labelled.labels(version).inc(labelled)
    metrics.cumulative_accuracy.labels(version).set(accuracy)


def test_list_shows_versions_newest_first_with_alias_metrics_and_data_hash(
    registry: TrainingSettings,
) -> None:
    code, out, _ = _run("model", "list", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["model"] == NAME
    newest, oldest = doc["versions"]
    assert (newest["version"], newest["aliases"], newest["data_hash"]) == ("2", [], "sha256:bbbb2222")
    assert oldest["version"] == "1" and oldest["aliases"] == ["champion"]
    assert oldest["arch"] == "resnet18" and oldest["run_id"]
    assert oldest["metrics"] == {"test_accuracy": pytest.approx(0.91), "test_ece": pytest.approx(0.05)}
    code, out, _ = _run("model", "list")  # the table names the same things
    assert code == 0 and "champion" in out and "sha256:aaaa1111" in out and "accuracy=0.9100" in out


def test_promote_moves_the_alias_and_refuses_an_unknown_version(registry: TrainingSettings) -> None:
    code, out, _ = _run("model", "promote", "2")
    assert (code, out) == (0, f"{NAME}@champion: 1 -> 2\n")
    assert _champion(registry) == "2"
    code, out, err = _run("model", "promote", "7")
    assert code == 1 and out == "" and err == f"{NAME} has no version 7 at {registry.mlflow_tracking_uri}\n"
    assert _champion(registry) == "2"


def test_guarded_promote_compares_feedback_accuracy(registry: TrainingSettings, monitor: Monitor) -> None:
    url = monitor.url
    guarded = (
        "model",
        "promote",
        "2",
        "--guarded",
        "--monitor",
        url,
        "--min-labels",
        "50",
        "--margin",
        "0.05",
    )
    _feedback(monitor, "1", labelled=400, accuracy=0.90)
    _feedback(monitor, "2", labelled=60, accuracy=0.80)
    code, out, err = _run(*guarded)
    assert (
        code == 1 and out == "" and err.startswith("refused: version 2 feedback accuracy 0.8000 (60 labels)")
    )
    assert _champion(registry) == "1"
    monitor.metrics.cumulative_accuracy.labels("2").set(0.87)  # within the margin
    code, out, _ = _run(*guarded)
    assert (code, out) == (0, f"{NAME}@champion: 1 -> 2\n")
    assert _champion(registry) == "2"


def _side_by_side(monitor: Monitor, role: str, version: str, labelled: int, accuracy: float) -> None:
    metrics = monitor.metrics
    metrics.model_labelled.labels(role, version).set(labelled)
    metrics.model_cumulative_accuracy.labels(role, version).set(accuracy)


def test_guarded_promote_judges_the_challenger_by_its_shadow_figures(
    registry: TrainingSettings, monitor: Monitor
) -> None:
    """Version 2 was shadowed (role challenger) beside champion 1: those figures decide, even
    when a champion-only figure for version 2 says otherwise."""
    url = monitor.url
    guarded = ("model", "promote", "2", "--guarded", "--monitor", url, "--min-labels", "50")
    _side_by_side(monitor, "champion", "1", labelled=400, accuracy=0.90)
    _side_by_side(monitor, "challenger", "2", labelled=300, accuracy=0.70)
    _feedback(monitor, "2", labelled=100, accuracy=0.99)  # not what the shadow measured
    code, out, err = _run(*guarded, "--margin", "0.05")
    assert code == 1 and out == ""
    assert err.startswith("refused: version 2 feedback accuracy 0.7000 (300 labels) is below champion")
    assert _champion(registry) == "1"
    _side_by_side(monitor, "challenger", "2", labelled=300, accuracy=0.88)
    code, out, _ = _run(*guarded, "--margin", "0.05")
    assert (code, out) == (0, f"{NAME}@champion: 1 -> 2\n")


def test_guarded_promote_refuses_too_few_labels_unless_forced(
    registry: TrainingSettings, monitor: Monitor
) -> None:
    url = monitor.url
    _feedback(monitor, "1", labelled=400, accuracy=0.90)
    _feedback(monitor, "2", labelled=10, accuracy=0.95)
    code, _, err = _run("model", "promote", "2", "--guarded", "--monitor", url, "--min-labels", "50")
    assert code == 1
    assert err == (
        "refused: challenger version 2 has 10 labelled events at the monitor, fewer than 50 "
        "(--min-labels); --force promotes anyway\n"
    )
    assert _champion(registry) == "1"
    code, _, _ = _run("model", "promote", "2", "--guarded", "--monitor", url, "--min-labels", "50", "--force")
    assert code == 0 and _champion(registry) == "2"


def test_guarded_promote_without_a_monitor_is_refused(registry: TrainingSettings) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"
    code, _, err = _run("model", "promote", "2", "--guarded", "--monitor", url)
    assert code == 1 and err.startswith(f"refused: the monitor's metrics at {url} could not be read")
    assert _champion(registry) == "1"


def test_promote_refuses_a_version_that_does_not_load_unless_forced(
    registry: TrainingSettings, artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    # What running workers would refuse, and a worker starting with it would die of.
    broken = corrupt_copy(artifacts[0], tmp_path / "corrupt")
    assert register_version(registry, broken, accuracy=0.93) == "3"  # its metrics look fine
    move_alias(registry, "champion", "1")
    code, out, err = _run("model", "promote", "3")
    assert code == 1 and out == ""
    last = err.splitlines()[-1]  # after MLflow's download progress
    assert last.startswith("refused: version 3 does not load and warm up: ") and "--force" in last
    assert _champion(registry) == "1"
    code, out, _ = _run("model", "promote", "3", "--force")
    assert (code, out) == (0, f"{NAME}@champion: 1 -> 3\n")
    assert _champion(registry) == "3"


def _paired(monitor: Monitor, labelled: int, champion_correct: int, challenger_correct: int) -> None:
    pair = {"champion_version": "1", "challenger_version": "2"}
    metrics = monitor.metrics
    metrics.paired_labels.labels(**pair).inc(labelled)
    metrics.paired_correct.labels(**pair, role="champion").inc(champion_correct)
    metrics.paired_correct.labels(**pair, role="challenger").inc(challenger_correct)


def test_guarded_promote_compares_paired_figures_when_there_are_enough(
    registry: TrainingSettings, monitor: Monitor
) -> None:
    """On the same labelled images version 2 is worse, though its shadow figure over other
    images (a kinder span) says it is better: the paired figures decide."""
    guarded = ("model", "promote", "2", "--guarded", "--monitor", monitor.url, "--min-labels", "50")
    _side_by_side(monitor, "champion", "1", labelled=400, accuracy=0.80)
    _side_by_side(monitor, "challenger", "2", labelled=300, accuracy=0.95)
    _paired(monitor, labelled=40, champion_correct=38, challenger_correct=30)
    code, out, _ = _run(*guarded, "--margin", "0.05")  # 40 pairs: too few, the cumulative figures
    assert (code, out) == (0, f"{NAME}@champion: 1 -> 2\n")
    move_alias(registry, "champion", "1")
    _paired(monitor, labelled=60, champion_correct=57, challenger_correct=48)  # 100 pairs now
    code, out, err = _run(*guarded, "--margin", "0.05")
    assert code == 1 and out == ""
    assert err.startswith(
        "refused: version 2 feedback accuracy 0.7800 is below champion version 1's 0.9500 "
        "on the same 100 labelled images"
    )
    assert _champion(registry) == "1"
