"""GET /v1/model: the identity the workers report, grouped by the API; on the real broker, it
follows a worker restarted on another model version."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from api.bodies import ModelServing
from api.models_reader import ModelDirectory
from pawstream.schemas import utcnow
from pawstream.settings import Settings
from pawstream.vision.predictor import Predictor
from stack.children import service_command, service_env
from stream.worker.heartbeat import build_heartbeat
from tests.support.api import serve
from tests.support.artifacts import make_artifact
from tests.support.lifecycle import served_from_registry
from tests.support.registry import register_version, training_settings
from tests.support.settings import with_artifact
from tests.support.waiting import eventually_async
from tests.support.workers import running_worker

logger = logging.getLogger(__name__)


def test_the_api_groups_workers_by_identity_and_names_a_rollout(tiny_artifact: Path) -> None:
    settings = Settings(log_json=False)
    predictor = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7, warmup=False)
    now = utcnow()
    a = build_heartbeat(settings, predictor, "a", now)
    b = build_heartbeat(settings, predictor, "b", now - timedelta(seconds=5))
    c = build_heartbeat(settings, predictor, "c", now).model_copy(update={"version": "test-2"})
    one = ModelServing.of([a, b], caught_up=True)
    assert one.status == "serving" and len(one.models) == 1
    assert [w.worker for w in one.models[0].workers] == ["a", "b"] and one.models[0].loaded_at == b.loaded_at
    two = ModelServing.of([a, b, c], caught_up=True)
    assert two.status == "rollout" and sorted(m.version for m in two.models) == ["test-1", "test-2"]
    assert ModelServing.of([], caught_up=True).status == "no_workers"
    assert ModelServing.of([], caught_up=False).status == "starting"


def test_the_challenger_a_worker_shadows_with_is_part_of_what_it_serves(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    settings = Settings(log_json=False)
    champion = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7, warmup=False)
    other = make_artifact(tmp_path / "challenger", seed=9, version="test-9")
    challenger = Predictor.from_artifact(other, threads=1, max_pixels=10**7, warmup=False)
    shadowing = build_heartbeat(settings, champion, "a", utcnow(), challenger)
    plain = build_heartbeat(settings, champion, "b", utcnow())
    serving = ModelServing.of([shadowing, plain], caught_up=True)
    assert serving.status == "rollout"  # one worker shadows, the other does not
    body = serving.model_dump(mode="json")
    with_challenger = [m for m in body["models"] if m["challenger"] is not None]
    assert len(with_challenger) == 1 and [w["worker"] for w in with_challenger[0]["workers"]] == ["a"]
    assert with_challenger[0]["challenger"]["version"] == "test-9"
    assert with_challenger[0]["version"] == "test-1"


def test_the_directory_keeps_each_workers_newest_live_heartbeat(tiny_artifact: Path) -> None:
    settings = Settings(log_json=False)
    predictor = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7, warmup=False)
    directory = ModelDirectory(settings)
    old = build_heartbeat(settings, predictor, "a", utcnow())
    new = old.model_copy(update={"version": "test-2"})
    gone = build_heartbeat(settings, predictor, "b", utcnow()).model_copy(
        update={"sent_at": utcnow() - timedelta(seconds=3 * settings.worker.heartbeat_s + 1)}
    )
    for hb in (old, new, gone):
        directory.apply(hb.record_key(), hb.to_bytes())
    directory.apply(b"junk", b"[" * 100_000 + b"]" * 100_000)  # skipped, never raises
    directory.apply(
        b"early", old.to_bytes().replace(b'"sent_at":"', b'"sent_at":"0001-01-01T00:00:00+01:00","x":"')
    )
    assert [hb.version for hb in directory.serving()] == ["test-2"]  # b is silent for 3 heartbeats
    directory.apply(new.record_key(), None)  # a tombstone deletes the worker
    assert directory.serving() == []


def _serving(version: str) -> Callable[[httpx.Response], bool]:
    def check(r: httpx.Response) -> bool:
        body = r.json()
        return r.status_code == 200 and [m["version"] for m in body["models"]] == [version]

    return check


@pytest.mark.integration
async def test_model_route_follows_a_worker_restarted_on_another_version(
    api_settings: Settings, tmp_path: Path
) -> None:
    v1 = make_artifact(tmp_path / "v1", version="v1", seed=1)
    v2 = make_artifact(tmp_path / "v2", version="v2", seed=2)
    start = time.monotonic()
    async with serve(api_settings) as api:
        first = await api.client.get("/v1/model")
        assert first.status_code == 200 and first.json()["models"] == []
        with running_worker(with_artifact(api_settings, v1, heartbeat_s=1.0), tmp_path) as worker:
            r = await eventually_async(
                lambda: api.client.get("/v1/model"),
                90,  # a cold worker start (torch import, model load, group join) on a busy runner
                interval=0.2,
                until=_serving("v1"),
                message=lambda: f"/v1/model to show v1: {worker.log_tail()}",
            )
        body = r.json()
        assert body["status"] == "serving"
        model = body["models"][0]
        assert (model["name"], model["arch"], model["runtime"]) == ("pawstream-test", "resnet18", "fp32")
        assert model["labels"] == ["cat", "dog"] and model["input"]["size"] == 64
        assert [w["worker"] for w in model["workers"]] == ["worker"]
        switched = time.monotonic()
        # Same worker name, so its heartbeat replaces the old one under the same key.
        with running_worker(with_artifact(api_settings, v2, heartbeat_s=1.0), tmp_path) as worker:
            await eventually_async(
                lambda: api.client.get("/v1/model"),
                90,  # a cold worker start (torch import, model load, group join) on a busy runner
                interval=0.2,
                until=_serving("v2"),
                message=lambda: f"/v1/model to show v2: {worker.log_tail()}",
            )
        # Stopped and silent for three heartbeats: no worker serves any more.
        await eventually_async(
            lambda: api.client.get("/v1/model"),
            10,
            interval=0.2,
            until=lambda r: r.json()["status"] == "no_workers",
            message="/v1/model to drop the stopped worker",
        )
    logger.info(
        "v1 seen after %.1fs, v2 %.1fs after the restart", switched - start, time.monotonic() - switched
    )


@pytest.mark.integration
async def test_model_route_follows_a_promotion_without_a_restart(
    api_settings: Settings, tmp_path: Path
) -> None:
    """`pawstream model promote 2` moves @champion; the running worker hot-reloads it and
    /v1/model shows version 2 served by the same worker process, with a later loaded_at."""
    training = training_settings(tmp_path)
    for version, seed in (("1", 1), ("2", 2)):
        artifact = make_artifact(tmp_path / f"v{version}", version=version, seed=seed)
        assert register_version(training, artifact, accuracy=0.9 if version == "1" else 0.1) == version
    s = served_from_registry(api_settings, training, tmp_path / "models", model_poll_s=1.0, heartbeat_s=1.0)
    async with serve(s) as api:
        with running_worker(s, tmp_path) as worker:
            before = await eventually_async(
                lambda: api.client.get("/v1/model"),
                90,  # a cold worker start (torch import, model load, group join) on a busy runner
                interval=0.2,
                until=_serving("1"),
                message=lambda: f"/v1/model to show version 1: {worker.log_tail()}",
            )
            assert worker.proc is not None
            pid = worker.proc.pid
            # Not subprocess.run: the API under test shares this event loop.
            promote = await asyncio.create_subprocess_exec(
                *service_command("model", "promote", "2"),
                env=service_env(s),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(promote.communicate(), 120)
            assert promote.returncode == 0, output.decode(errors="replace")
            after = await eventually_async(
                lambda: api.client.get("/v1/model"),
                60,
                interval=0.2,
                until=_serving("2"),
                message=lambda: f"/v1/model to show version 2 after the promotion: {worker.log_tail()}",
            )
            assert worker.alive() and worker.proc.pid == pid, worker.log_tail()  # reloaded, not restarted
    old, new = before.json()["models"][0], after.json()["models"][0]
    assert [w["worker"] for w in new["workers"]] == [w["worker"] for w in old["workers"]]
    assert new["alias"] == "champion" and new["loaded_at"] > old["loaded_at"]
