"""The reference resolver against real files and a real local HTTP server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from pawstream.references import ReferenceFetcher, ReferencePolicy, file_uri
from pawstream.schemas import DeadLetterReason, EventError
from pawstream.settings import ReferenceSettings
from tests.conftest import jpeg_bytes

IMG = jpeg_bytes(7, (32, 32))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    (r / "ok.jpg").write_bytes(IMG)
    (r / "big.bin").write_bytes(b"\0" * 5000)
    (tmp_path / "secret.jpg").write_bytes(IMG)
    (r / "escape.jpg").symlink_to(tmp_path / "secret.jpg")
    (r / "zero").symlink_to("/dev/zero")
    os.mkfifo(r / "fifo")
    return r


def refs(root: Path, **kw: object) -> ReferenceSettings:
    base: dict[str, object] = {
        "allowed_roots": [root],
        "file_max_bytes": 4096,
        "http_timeout_s": 1.0,
        "http_max_bytes": 4096,
    }
    base.update(kw)
    return ReferenceSettings.model_validate(base)


async def test_file_inside_root_is_read(root: Path) -> None:
    async with ReferenceFetcher(refs(root)) as f:
        assert await f.fetch(file_uri(root / "ok.jpg")) == IMG


@pytest.mark.parametrize(
    ("uri", "reason", "match"),
    [
        ("file:///etc/passwd", DeadLetterReason.REFERENCE, "outside the allowed roots"),
        ("{root}/../secret.jpg", DeadLetterReason.REFERENCE, r"'\.\.'"),
        ("{root}/escape.jpg", DeadLetterReason.REFERENCE, "outside the allowed roots"),  # symlink out
        ("{root}/zero", DeadLetterReason.REFERENCE, "outside the allowed roots"),  # device via symlink
        ("{root}/fifo", DeadLetterReason.REFERENCE, "not a regular file"),
        ("{root}/missing.jpg", DeadLetterReason.REFERENCE, "not found"),
        ("{root}/big.bin", DeadLetterReason.TOO_LARGE, "over the 4096"),
        ("ftp://example.org/x.jpg", DeadLetterReason.REFERENCE, "scheme 'ftp'"),
        ("file://otherhost/etc/passwd", DeadLetterReason.REFERENCE, "must be local"),
    ],
)
async def test_file_references_are_confined(
    root: Path, uri: str, reason: DeadLetterReason, match: str
) -> None:
    uri = uri.replace("{root}", "file://" + str(root))
    async with ReferenceFetcher(refs(root)) as f:
        with pytest.raises(EventError, match=match) as info:
            await f.fetch(uri)
    assert info.value.reason is reason


def test_file_references_disabled_without_roots(root: Path) -> None:
    with pytest.raises(EventError, match="disabled"):
        ReferencePolicy(ReferenceSettings()).check(file_uri(root / "ok.jpg"))


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(body=IMG, content_type="image/jpeg")

    # The slow endpoint answers only when the fixture ends: past any client deadline.
    released = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await released.wait()
        return web.Response(body=IMG)

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(10_000):
            await resp.write(b"\0" * 1024)
        return resp

    async def redirect_out(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://evil.example/x.jpg")

    async def redirect_in(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def missing(_: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app = web.Application()
    app.add_routes(
        [
            web.get("/ok", ok),
            web.get("/slow", slow),
            web.get("/endless", endless),
            web.get("/redirect-out", redirect_out),
            web.get("/redirect-in", redirect_in),
            web.get("/missing", missing),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    released.set()
    await runner.cleanup()


async def test_http_fetch_and_same_host_redirect(root: Path, http_server: str) -> None:
    async with ReferenceFetcher(refs(root, http_allowed_hosts=["127.0.0.1"])) as f:
        assert await f.fetch(f"{http_server}/ok") == IMG
        assert await f.fetch(f"{http_server}/redirect-in") == IMG


@pytest.mark.parametrize(
    ("path", "reason", "match"),
    [
        ("/slow", DeadLetterReason.REFERENCE, "longer than"),
        ("/endless", DeadLetterReason.TOO_LARGE, "more than 4096 bytes"),
        ("/redirect-out", DeadLetterReason.REFERENCE, "not in the allowed hosts"),
        ("/missing", DeadLetterReason.REFERENCE, "HTTP 404"),
    ],
)
async def test_http_limits(
    root: Path, http_server: str, path: str, reason: DeadLetterReason, match: str
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with ReferenceFetcher(refs(root, http_allowed_hosts=["127.0.0.1"])) as f:
        with pytest.raises(EventError, match=match) as info:
            await f.fetch(f"{http_server}{path}")
    assert info.value.reason is reason
    assert loop.time() - started < 3.0  # the 1 s deadline holds, with margin for a loaded machine
