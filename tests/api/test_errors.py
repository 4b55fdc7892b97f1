"""Every error answer: its status, its JSON body, and (for 503) its Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pawstream.broker import free_port
from pawstream.settings import Settings
from tests.support.api import serve, with_api
from tests.support.images import jpeg_bytes
from tests.support.kafka import TopicReader
from tests.support.wire import WireLog

pytestmark = pytest.mark.integration


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    assert r.json()["error"]["message"]
    return code


def small_inline(settings: Settings, limit: int) -> Settings:
    refs = settings.refs.model_copy(update={"inline_max_bytes": limit})
    return settings.model_copy(update={"refs": refs})


async def test_upload_over_the_inline_limit_is_413(api_settings: Settings) -> None:
    settings = small_inline(api_settings, 4000)
    big = jpeg_bytes(1, (400, 300))
    assert len(big) > 4000
    async with serve(settings) as api:
        r = await api.client.post("/v1/images", files={"file": ("big.jpg", big, "image/jpeg")})
        assert r.status_code == 413 and error_code(r) == "payload_too_large"
        assert "4000" in r.json()["error"]["message"]

        # No Content-Length (chunked): the limit is enforced while the body streams in.
        boundary = "xyz"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        sent = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            yield head.encode()
            for _ in range(10_000):  # up to 160 MB if nothing stopped it
                sent += 16_384
                yield b"\xff" * 16_384

        r = await api.client.post(
            "/v1/images",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert r.status_code == 413
        assert sent < 4000 + 64 * 1024 + 2 * 16_384  # stopped right after the limit

        # A declared Content-Length over the limit is refused before reading anything.
        r = await api.client.post(
            "/v1/images",
            content=b"x" * 200_000,
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert r.status_code == 413
        r = await api.client.post(
            "/v1/images", content=b"{" * 20_000, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413

        # Just under the limit is fine.
        ok = jpeg_bytes(2, (40, 30))
        r = await api.client.post("/v1/images", files={"file": ("ok.jpg", ok, "image/jpeg")})
        assert r.status_code == 202, r.text


async def test_not_an_image_is_415(api_settings: Settings) -> None:
    async with serve(api_settings) as api:
        c = api.client
        for name, data in [("fake.jpg", b"hello, not an image"), ("doc.jpg", b"%PDF-1.7\n" + b"0" * 100)]:
            r = await c.post("/v1/images", files={"file": (name, data, "image/jpeg")})
            assert r.status_code == 415 and error_code(r) == "unsupported_image", r.text
        r = await c.post("/v1/images", content=b"plain", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and error_code(r) == "unsupported_media_type"
        r = await c.post("/v1/feedback", content=b"id=x", headers={"content-type": "text/plain"})
        assert r.status_code == 415


async def test_bad_references_are_422(api_settings: Settings, tmp_path: Path, wire: WireLog) -> None:
    inside = tmp_path / "ok.jpg"
    inside.write_bytes(jpeg_bytes(3))
    escape = tmp_path / "escape.jpg"
    escape.symlink_to("/etc/hostname")
    async with serve(api_settings) as api:
        c = api.client
        bad = {
            "ftp://example.com/cat.jpg": "scheme",
            "gopher://example.com/cat.jpg": "scheme",
            "cat.jpg": "scheme",
            f"file://{tmp_path}/../../etc/passwd": "..",
            f"file://{tmp_path}/ok.jpg%00.png": "NUL byte",
            "file://otherhost/etc/passwd": "local",
            # Malformed URLs are a 422 with a message, never a 500.
            "http://[::1": "malformed",
            "http://a:99999/x.jpg": "invalid port",
            "http://\uff45xample.com/x.jpg": "malformed",  # changes under NFKC
            "http://" + "a" * 300 + "/x.jpg": "too long",
            "http://2130706433/x.jpg": "non-canonical IPv4",
            # The safe default: loopback, private, link-local (metadata) addresses are refused.
            "http://127.0.0.1:8000/x.jpg": "refused by policy",
            "http://localhost:8000/x.jpg": "refused by policy",
            "http://[::1]/x.jpg": "refused by policy",
            "http://10.0.0.1/x.jpg": "refused by policy",
            "http://169.254.169.254/latest/meta-data": "refused by policy",
            "http://[fd00::1]/x.jpg": "refused by policy",
            "http://[::ffff:127.0.0.1]/x.jpg": "refused by policy",
        }
        for uri, why in bad.items():
            for field in ("ref", "url"):
                r = await c.post("/v1/images", json={field: uri})
                assert r.status_code == 422, (uri, r.text)
                assert error_code(r) == "invalid_reference"
                assert why in r.json()["error"]["message"], (uri, r.json())
        r = await c.post("/v1/images", json={"url": "ftp://example.com/x.jpg"})
        assert r.status_code == 422

        # A file outside the roots, a symlink out of them and a missing file get one answer: the API
        # does not tell which files exist.
        answers = set()
        for uri in [
            "file:///etc/passwd",
            "file:///etc/no-such-file",
            escape.as_uri(),
            f"file://{tmp_path}/missing.jpg",
        ]:
            r = await c.post("/v1/images", json={"ref": uri})
            assert r.status_code == 422 and error_code(r) == "invalid_reference", (uri, r.text)
            answers.add(r.json()["error"]["message"])
        assert len(answers) == 1 and "not found or not allowed" in answers.pop()

        for body in [{}, {"url": "http://a/x.jpg", "ref": "http://a/x.jpg"}, {"uri": "http://a"}, [1]]:
            r = await c.post("/v1/images", json=body)
            assert r.status_code == 422 and error_code(r) == "validation_error", (body, r.text)
        r = await c.post("/v1/images", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and error_code(r) == "invalid_json"
        r = await c.post("/v1/images", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
        assert r.status_code == 400 and error_code(r) == "invalid_multipart"
        r = await c.post("/v1/images", files={"other": ("a.jpg", jpeg_bytes(1), "image/jpeg")})
        assert r.status_code == 422 and error_code(r) == "missing_file"

        # Controls: a file inside the roots, and a public hostname (the API does no DNS; the worker
        # resolves it and checks every address before it connects).
        for body in [{"ref": inside.as_uri()}, {"url": "https://example.com/cat.jpg"}]:
            r = await c.post("/v1/images", json=body)
            assert r.status_code == 202, (body, r.text)
    # Refused or accepted, no named host was looked up or connected to: the API decides on the text.
    for url in [*bad, "https://example.com/cat.jpg"]:
        if url.startswith(("http://", "https://")) and wire.has_host_and_port(url):
            assert wire.touched(url) == [], url


async def test_private_networks_are_accepted_once_allowed(api_settings: Settings, wire: WireLog) -> None:
    refs = api_settings.refs.model_copy(update={"allowed_networks": ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]})
    async with serve(api_settings.model_copy(update={"refs": refs})) as api:
        for url in ["http://127.0.0.1:8000/x.jpg", "http://localhost/x.jpg", "http://10.1.2.3/x.jpg"]:
            r = await api.client.post("/v1/images", json={"url": url})
            assert r.status_code == 202, (url, r.text)
        r = await api.client.post("/v1/images", json={"url": "http://169.254.169.254/latest/meta-data"})
        assert r.status_code == 422 and "link-local" in r.json()["error"]["message"]
    # Accepted means published for a worker to fetch: the API itself never went to these hosts.
    for url in ["http://127.0.0.1:8000/x.jpg", "http://localhost/x.jpg", "http://10.1.2.3/x.jpg",
                "http://169.254.169.254/latest/meta-data"]:  # fmt: skip
        assert wire.touched(url) == [], url


async def test_feedback_labels_are_checked_and_published(api_settings: Settings) -> None:
    async with serve(api_settings) as api:
        c = api.client
        r = await c.post("/v1/feedback", json={"id": "img-1", "label": "hamster"})
        assert r.status_code == 422 and error_code(r) == "unknown_label"
        assert "cat" in r.json()["error"]["message"]
        for body in [{"id": "img 1", "label": "cat"}, {"id": "img-1"}, {"id": "img-1", "label": ""}]:
            r = await c.post("/v1/feedback", json=body)
            assert r.status_code == 422 and error_code(r) == "validation_error", body
        # An id with no prediction (labels may arrive first) is accepted.
        r = await c.post("/v1/feedback", json={"id": "img-1", "label": "dog"})
        assert r.status_code == 202 and r.json() == {"id": "img-1", "label": "dog", "status": "accepted"}
        r = await c.post("/v1/feedback", json={"id": "img-2", "label": "cat"})
        assert r.status_code == 202

    async with TopicReader(api_settings, api_settings.topics.feedback) as feedback:
        await feedback.wait_until(lambda recs: len(recs) >= 2, 10, "2 feedback events")
    got = {(rec["_key"], rec["id"], rec["label"], rec["type"], rec["source"]) for rec in feedback.records}
    assert got == {("img-1", "img-1", "dog", "feedback", "api"), ("img-2", "img-2", "cat", "feedback", "api")}


async def test_api_key_protects_writes(api_settings: Settings) -> None:
    settings = with_api(api_settings, api_key="s3cret")
    async with serve(settings) as api:
        c = api.client
        body = {"id": "img-1", "label": "cat"}
        assert (await c.post("/v1/feedback", json=body)).status_code == 401
        r = await c.post("/v1/feedback", json=body, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and error_code(r) == "unauthorized"
        assert (await c.post("/v1/feedback", json=body, headers={"X-API-Key": "s3cret"})).status_code == 202
        assert (await c.get("/v1/predictions/img-1")).status_code == 404  # reads stay open


async def test_broker_down_is_503_with_retry_after(api_settings: Settings) -> None:
    """A closed port: the API still starts, answers 503 fast, and /readyz says why."""
    kafka = api_settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    settings = with_api(api_settings.model_copy(update={"kafka": kafka}), send_timeout_s=2.0, retry_after_s=7)
    async with serve(settings, ready=False) as api:
        c = api.client
        start = time.monotonic()
        r = await c.post("/v1/images", files={"file": ("a.jpg", jpeg_bytes(1), "image/jpeg")})
        assert r.status_code == 503 and error_code(r) == "broker_unavailable", r.text
        assert r.headers["retry-after"] == "7"
        r = await c.post("/v1/feedback", json={"id": "img-1", "label": "cat"})
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert time.monotonic() - start < 4
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["broker"] is False and r.json()["checks"]["store"] is True
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/v1/predictions/abc")).status_code == 404  # lookups need only the store


async def test_silent_broker_times_out_into_503(api_settings: Settings) -> None:
    """A broker that accepts connections but never answers: the send deadline bounds the request."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, answer nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kafka = api_settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{port}"})
    settings = with_api(api_settings.model_copy(update={"kafka": kafka}), send_timeout_s=0.5)
    try:
        async with serve(settings, ready=False) as api:
            start = time.monotonic()
            r = await api.client.post("/v1/images", json={"url": "https://example.com/cat.jpg"})
            elapsed = time.monotonic() - start
            assert r.status_code == 503 and error_code(r) == "broker_unavailable"
            assert "0.5" in r.json()["error"]["message"]
            assert 0.5 <= elapsed < 2
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_feedback_without_a_model_artifact_is_503(api_settings: Settings, tmp_path: Path) -> None:
    model = api_settings.model.model_copy(update={"artifact_path": tmp_path / "no-model"})
    async with serve(api_settings.model_copy(update={"model": model})) as api:
        r = await api.client.post("/v1/feedback", json={"id": "img-1", "label": "cat"})
        assert r.status_code == 503 and error_code(r) == "model_unavailable"
        assert "no model artifact" in r.json()["error"]["message"]


async def test_unknown_routes_and_methods_are_json(api_settings: Settings) -> None:
    async with serve(api_settings, ready=False) as api:
        r = await api.client.get("/v2/nothing")
        assert r.status_code == 404 and error_code(r) == "not_found"
        r = await api.client.delete("/v1/images")
        assert r.status_code == 405 and error_code(r) == "method_not_allowed"
