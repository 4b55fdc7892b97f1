"""The labelling page at /ui: one server-rendered template, a small script that polls /ui/state.

The page itself is open; what it shows (/ui/state, /ui/thumbs: every client's recent images) and
what it does (POST /v1/images, POST /v1/feedback, POST /ui/retrain) need the API key when keys
are on: the page asks for the key once and keeps it in the browser session (sessionStorage), and
fetches thumbnails with it too. POST /ui/retrain (a long CPU job) is refused outright unless keys
are on. Everything is rate-limited like /v1/* (the page backs off on 429
for the Retry-After it is given). Thumbnails are served by image id from the in-memory store only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import LabelsDep, ModelsDep, MonitoringDep, RateLimited, SettingsDep, StateDep, WriteAccess
from api.errors import ApiError
from api.labels import ModelUnavailable
from api.retrain_job import JobRunning
from pawstream import __version__
from pawstream.schemas import ID_PATTERN

HERE = Path(__file__).parent
STATIC = HERE / "static"
LIST_MAX = 50  # rows per list the page shows (the queue and the recent predictions)

ImageId = Annotated[str, PathParam(pattern=ID_PATTERN)]


def _labels(labels: Any) -> list[str]:
    try:
        return list(labels.get())
    except ModelUnavailable:
        return []  # no artifact yet: the page shows predictions, without label buttons


def ui_router() -> APIRouter:
    templates = Jinja2Templates(directory=HERE / "templates")
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("", response_class=HTMLResponse, dependencies=[RateLimited])
    async def page(request: Request, settings: SettingsDep, labels: LabelsDep) -> HTMLResponse:
        config = {
            "labels": _labels(labels),
            "keys_on": settings.api.api_key is not None,
            "poll_ms": int(settings.ui.poll_s * 1000),
            "retrain": settings.ui.retrain,
            "wait_s": min(30.0, settings.api.wait_max_s),
        }
        return templates.TemplateResponse(
            request, "index.html", {"config": config, "version": __version__, "retrain": settings.ui.retrain}
        )

    # The lists show every client's recent images: with keys on, only to a client with the key.
    @router.get("/state", dependencies=[WriteAccess, RateLimited])
    async def state(
        api: StateDep, labels: LabelsDep, monitoring: MonitoringDep, models: ModelsDep
    ) -> dict[str, Any]:
        recent = api.recent

        def row(item: Any) -> dict[str, Any]:
            return {**item.as_json(), "thumb": api.thumbnails.get(item.id) is not None}

        serving = [
            {
                "name": hb.name,
                "version": hb.version,
                "arch": hb.arch,
                "runtime": hb.runtime,
                "worker": hb.worker,
                "loaded_at": hb.loaded_at.timestamp(),
            }
            for hb in models.serving()
        ]
        return {
            "now": time.time(),
            "api_started_at": api.started_at,
            "labels": _labels(labels),
            "recent": [row(i) for i in recent.recent(LIST_MAX)],
            "queue": [row(i) for i in recent.queue(LIST_MAX)],
            "labelled_here": recent.label_accuracy(),
            "rates": recent.rates(),
            "monitoring": await monitoring.summary(),
            "serving": serving,
            "retrain": api.retrain.status(),
        }

    @router.get("/thumbs/{image_id}", dependencies=[WriteAccess, RateLimited])
    async def thumbnail(image_id: ImageId, api: StateDep) -> Response:
        jpeg = api.thumbnails.get(image_id)
        if jpeg is None:
            raise ApiError(404, "not_found", f"no thumbnail for {image_id!r}")
        # Thumbnails never change: the browser may keep them, so polling does not fetch them again.
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/retrain", status_code=202, dependencies=[WriteAccess, RateLimited])
    async def retrain(api: StateDep, settings: SettingsDep) -> JSONResponse:
        if not settings.ui.retrain:
            raise ApiError(403, "retrain_disabled", "retraining from the page is off (ui.retrain)")
        if settings.api.api_key is None:
            # Without keys anyone who reaches the API could start a long CPU-heavy job: deny first.
            raise ApiError(
                403,
                "retrain_needs_key",
                "retraining from the page needs API keys on (set api.api_key); "
                "run `pawstream retrain` on the host instead",
            )
        try:
            api.retrain.start()
        except JobRunning as exc:
            raise ApiError(409, "retrain_running", str(exc)) from exc
        return JSONResponse(api.retrain.status(), status_code=202)

    return router
