"""The page's own endpoints in-process (real lifespan, real broker): its key and rate limit, the
thumbnail route, the recent list and review queue fed by real results, and the retrain job (off by
default, one at a time, stopped with the API)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from api.store import Status, StoredResult
from pawstream.settings import Settings
from tests.support.api import serve, with_api
from tests.support.events import prediction, send_results
from tests.support.images import jpeg_bytes
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration


def with_ui(settings: Settings, **changes: object) -> Settings:
    ui = type(settings.ui).model_validate({**settings.ui.model_dump(), **changes})
    return settings.model_copy(update={"ui": ui})


async def test_page_and_state_respect_the_key_and_the_rate_limit(api_settings: Settings) -> None:
    settings = with_api(api_settings, api_key="s3cret", rate_limit="4/minute")
    async with serve(settings) as api:
        page = await api.client.get("/ui")
        assert page.status_code == 200 and '"keys_on": true' in page.text
        assert "s3cret" not in page.text  # the page asks for the key; the server never hands it out
        assert (await api.client.get("/ui/static/ui.js")).status_code == 200
        assert (await api.client.post("/ui/retrain")).status_code == 401
        # What the page shows is every client's recent images: only with the key.
        assert (await api.client.get("/ui/state")).status_code == 401
        assert (await api.client.get(f"/ui/thumbs/{'a' * 32}")).status_code == 401
        key = {"X-API-Key": "s3cret"}
        assert (await api.client.get("/ui/state", headers=key)).status_code == 200
        codes = [(await api.client.get("/ui/state", headers=key)).status_code for _ in range(4)]
        assert codes[-1] == 429 and 200 in codes


async def test_recent_queue_thumbnails_and_labels_given_here(api_settings: Settings) -> None:
    async with serve(api_settings) as api:
        r = await api.client.post(
            "/v1/images", files={"file": ("a.jpg", jpeg_bytes(3, (400, 300)), "image/jpeg")}
        )
        assert r.status_code == 202
        uploaded = r.json()["id"]
        thumb = await eventually_async(
            lambda: api.client.get(f"/ui/thumbs/{uploaded}"),
            10,
            until=lambda resp: resp.status_code == 200,
            message="the upload's thumbnail",
        )
        assert thumb.headers["content-type"] == "image/jpeg" and len(thumb.content) < 20_000
        assert (await api.client.get("/ui/thumbs/..%2F..%2Fetc%2Fpasswd")).status_code in (404, 422)

        sure, unsure = prediction(uploaded, "cat", 0.99), prediction("u" * 32, "dog", 0.55)
        await send_results(api_settings, sure, unsure)
        state = await eventually_async(
            lambda: api.client.get("/ui/state"),
            15,
            until=lambda resp: len(resp.json()["recent"]) == 2,
            message="both results in the recent list",
        )
        body = state.json()
        assert [row["id"] for row in body["queue"]] == [unsure.id, uploaded]  # least sure first
        assert {row["id"]: row["thumb"] for row in body["recent"]} == {uploaded: True, unsure.id: False}
        assert body["labelled_here"] == {"labelled": 0, "correct": 0, "accuracy": None}

        assert (
            await api.client.post("/v1/feedback", json={"id": uploaded, "label": "cat"})
        ).status_code == 202
        assert (
            await api.client.post("/v1/feedback", json={"id": unsure.id, "label": "cat"})
        ).status_code == 202
        body = (await api.client.get("/ui/state")).json()
        assert body["labelled_here"] == {"labelled": 2, "correct": 1, "accuracy": 0.5}
        assert body["queue"] == []  # both labelled


async def test_a_file_reference_gets_a_thumbnail_read_within_the_policy(
    api_settings: Settings, tmp_path: Path
) -> None:
    photo = tmp_path / "ref.jpg"  # tmp_path is one of the test settings' refs.allowed_roots
    photo.write_bytes(jpeg_bytes(8, (300, 200)))
    async with serve(api_settings) as api:
        r = await api.client.post("/v1/images", json={"ref": photo.as_uri()})
        assert r.status_code == 202, r.text
        await eventually_async(
            lambda: api.client.get(f"/ui/thumbs/{r.json()['id']}"),
            10,
            until=lambda resp: resp.status_code == 200,
            message="the reference's thumbnail",
        )


async def test_retrain_is_off_by_default_and_runs_one_job_at_a_time(
    api_settings: Settings, tmp_path: Path
) -> None:
    async with serve(api_settings) as api:
        r = await api.client.post("/ui/retrain")
        assert r.status_code == 403 and r.json()["error"]["code"] == "retrain_disabled"
    # On, but keys off: anyone could start a long CPU job, so it is refused with a message.
    async with serve(with_ui(api_settings, retrain=True)) as api:
        r = await api.client.post("/ui/retrain")
        assert r.status_code == 403 and r.json()["error"]["code"] == "retrain_needs_key", r.text
        assert "api.api_key" in r.json()["error"]["message"]
        assert api.state.retrain.runs == 0

    marker = tmp_path / "stopped"
    # Stands in for `pawstream retrain`: prints a step, then runs until the API stops it.
    script = (
        "import signal, sys, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(marker)!r}).touch(), sys.exit(1)))\n"
        "print('retrain: step 1/3 labels export into data/feedback', flush=True)\n"
        "signal.pause()\n"  # until the API's stop signals it
    )
    key = {"X-API-Key": "s3cret"}
    async with serve(with_ui(with_api(api_settings, api_key="s3cret"), retrain=True)) as api:
        api.state.retrain.command = [sys.executable, "-c", script]
        r = await api.client.post("/ui/retrain", headers=key)
        assert r.status_code == 202 and r.json()["state"] == "running"
        again = await api.client.post("/ui/retrain", headers=key)
        assert again.status_code == 409 and again.json()["error"]["code"] == "retrain_running"
        state = await eventually_async(
            lambda: api.client.get("/ui/state", headers=key),
            15,
            until=lambda resp: resp.json()["retrain"]["step"] == "1/3 labels export into data/feedback",
            message="the job's progress",
        )
        assert state.json()["retrain"]["state"] == "running"
    assert marker.exists()  # stopping the API stopped the job


def test_results_replace_in_order_and_the_list_is_bounded() -> None:
    from api.recent import RecentActivity

    recent = RecentActivity(max_items=3)
    events = [prediction(f"{i:032x}", "cat", 0.6 + i / 10) for i in range(4)]
    recent.on_results([StoredResult(e.id, Status.DONE, e.model_dump_json()) for e in events])
    assert [r.id for r in recent.recent(10)] == [e.id for e in reversed(events[1:])]  # oldest out
    recent.on_results([StoredResult(events[3].id, Status.FAILED, '{"reason": "decode"}')])
    assert recent.recent(1)[0].status == "done"  # a failure never replaces a prediction
