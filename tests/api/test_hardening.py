"""Hostile or broken input to the API: nested JSON, odd methods, failing dependencies, floods,
results from a newer worker, and results that race each other. Never a 5xx, never raw errors,
never an unbounded metric label."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.consumer import ResultConsumer
from api.metrics import ApiMetrics
from api.ratelimit import parse_rate_limit
from api.store import ResultStore, Status, make_store
from api.waiters import Waiters
from pawstream.broker import free_port
from pawstream.kafka import producer_kwargs
from pawstream.settings import Settings
from tests.support.api import serve, with_api
from tests.support.events import dead_letter, prediction, send_results
from tests.support.images import jpeg_bytes
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def label_values(text: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if label in s.labels
    }


def assert_error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code, r.text
    assert error["message"]
    message: str = error["message"]
    return message


# -- JSON depth --------------------------------------------------------------------------------


def nested_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def post_json(client: httpx.AsyncClient, path: str, body: bytes) -> httpx.Response:
    return await client.post(path, content=body, headers={"Content-Type": "application/json"})


async def test_deeply_nested_json_is_a_400_on_both_post_routes(api_settings: Settings) -> None:
    # 10 KB of nesting: json.loads alone raises RecursionError on it (a 500 before).
    deep = nested_array(5000)
    assert len(deep) == 10_000
    deep_inside = b'{"url": ' + nested_array(2000) + b"}"
    async with serve(api_settings, ready=False) as api:
        for path in ("/v1/images", "/v1/feedback"):
            for body in (deep, deep_inside):
                message = assert_error(await post_json(api.client, path, body), 400, "json_too_deep")
                assert "32" in message
            # One level within the default limit: parsed, then refused by the model (not by depth).
            r = await post_json(api.client, path, nested_array(32))
            assert_error(r, 422, "validation_error")
            # Brackets inside strings are text, not nesting.
            r = await post_json(api.client, path, json.dumps({"url": "[" * 5000}).encode())
            assert r.status_code == 422 and r.json()["error"]["code"] in (
                "validation_error",
                "invalid_reference",
            )


async def test_json_depth_limit_is_a_setting(api_settings: Settings) -> None:
    async with serve(with_api(api_settings, json_max_depth=3), ready=False) as api:
        r = await post_json(api.client, "/v1/feedback", b'{"id": [[["x"]]], "label": "cat"}')
        assert "3 levels" in assert_error(r, 400, "json_too_deep")
        r = await post_json(api.client, "/v1/feedback", b'{"id": [["x"]], "label": "cat"}')
        assert_error(r, 422, "validation_error")


@pytest.mark.parametrize(
    "body",
    [
        b'{"url": ' + b"1" * 5000 + b"}",  # past Python's int digit limit: ValueError, not JSONDecodeError
        b'{"url": NaN}',  # Python's json extension, not JSON
        b'{"url": Infinity}',
        b'{"url": "\xff"}',  # not UTF-8
        b'{"url": "a"',  # truncated
        b"",
    ],
)
async def test_other_malformed_json_is_a_400(api_settings: Settings, body: bytes) -> None:
    async with serve(api_settings, ready=False) as api:
        for path in ("/v1/images", "/v1/feedback"):
            assert_error(await post_json(api.client, path, body), 400, "invalid_json")


# -- metric labels -----------------------------------------------------------------------------


async def test_unknown_methods_share_one_metric_label(api_settings: Settings) -> None:
    async with serve(api_settings, ready=False) as api:
        for method in ("BREW", "FOO-1", "X" * 200, "PROPFIND"):
            r = await api.client.request(method, "/v1/images")
            assert r.status_code == 405, r.text
        await api.client.request("GARBAGE", "/no/such/path")
        text = (await api.client.get("/metrics")).text

    assert label_values(text, "method") <= {"GET", "POST", "other"}
    assert metric(text, "pawstream_api_requests_total", method="other", route="/v1/images", status="405") == 4
    assert metric(text, "pawstream_api_requests_total", method="other", route="unmatched", status="404") == 1
    assert label_values(text, "route") <= {"/v1/images", "unmatched", "/metrics"}


# -- /readyz -----------------------------------------------------------------------------------


async def test_readyz_gives_short_reasons_without_exception_text(
    api_settings: Settings, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    kafka = api_settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{port}"})
    settings = with_api(
        api_settings.model_copy(update={"kafka": kafka}),
        store="redis",
        redis_url="redis://127.0.0.1:1/0",
        redis_prefix=redis_prefix,
        probe_timeout_s=1.0,
    )
    caplog.set_level(logging.WARNING, logger="api")
    async with serve(settings, ready=False) as api:
        r = await api.client.get("/readyz")
        # A lookup needs the store: its 503 also says what, not the driver's error.
        lookup = await api.client.get("/v1/predictions/abc")

    assert r.status_code == 503
    body = r.json()
    assert body["checks"] == {"store": False, "broker": False, "consumer": False}
    assert body["details"]["store"] == "store unreachable"
    assert body["details"]["broker"] == "broker unreachable"
    assert body["details"]["consumer"] in (
        "result consumer restarting after an error",
        "result consumer still reading the result topics",
    )
    for leaked in (str(port), "127.0.0.1", ":1", "Error", "refused", "Traceback"):
        assert leaked not in r.text, r.text
    message = assert_error(lookup, 503, "store_unavailable")
    assert message == "the result store is unavailable"
    # The detail is logged for operators.
    logged = [getattr(rec, "error", "") for rec in caplog.records if rec.name == "api.routes.health"]
    assert any("127.0.0.1" in e or "onnect" in e for e in logged), logged


# -- rate limiting -----------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after_and_counts_it(api_settings: Settings) -> None:
    settings = with_api(api_settings, rate_limit="3/minute")
    async with serve(settings) as api:
        c = api.client
        for _ in range(3):
            assert (await c.get("/v1/predictions/abc")).status_code == 404
        r = await c.get("/v1/predictions/abc")
        message = assert_error(r, 429, "rate_limited")
        assert "3 requests per minute" in message
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # The bucket is per client, not per route: writes are refused too.
        r = await c.post("/v1/images", files={"file": ("a.jpg", jpeg_bytes(1), "image/jpeg")})
        assert_error(r, 429, "rate_limited")
        # Health and metrics are never limited.
        for _ in range(5):
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
        text = (await c.get("/metrics")).text

    assert metric(text, "pawstream_api_rate_limited_total", route="/v1/predictions/{image_id}") == 1
    assert metric(text, "pawstream_api_rate_limited_total", route="/v1/images") == 1
    assert label_values(text, "route") >= {"/v1/predictions/{image_id}"}


async def client_at(app: Any, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30)


async def test_each_client_address_and_api_key_has_its_own_bucket(api_settings: Settings) -> None:
    settings = with_api(api_settings, rate_limit="2/minute", api_key="s3cret")
    app = create_app(settings)
    key = {"X-API-Key": "s3cret"}
    feedback = {"id": "img-1", "label": "cat"}
    async with app.router.lifespan_context(app):
        a, b = await client_at(app, "127.0.0.10"), await client_at(app, "127.0.0.11")
        async with a, b:
            for _ in range(2):
                assert (await a.get("/v1/predictions/x")).status_code == 404
            assert_error(await a.get("/v1/predictions/x"), 429, "rate_limited")
            # A made-up key is no bucket of its own: still this address's (used up) bucket.
            assert_error(await a.get("/v1/predictions/x", headers={"X-API-Key": "nope"}), 429, "rate_limited")
            # Another address has its own bucket.
            assert (await b.get("/v1/predictions/x")).status_code == 404
            # The valid key has its own bucket, wherever it comes from.
            assert (await a.get("/v1/predictions/x", headers=key)).status_code == 404
            assert (await b.post("/v1/feedback", json=feedback, headers=key)).status_code == 202
            assert_error(await a.post("/v1/feedback", json=feedback, headers=key), 429, "rate_limited")
            # A refused key is a 401 before any bucket is counted.
            assert_error(await b.post("/v1/feedback", json=feedback), 401, "unauthorized")
            assert (await b.get("/v1/predictions/x")).status_code == 404  # b's second request


async def test_rate_limit_off_and_shared_in_redis(redis_settings: Settings, redis_url: str) -> None:
    async with serve(with_api(redis_settings, rate_limit=None)) as api:
        for _ in range(30):
            assert (await api.client.get("/v1/predictions/x")).status_code == 404

    # Two replicas with the Redis storage count one bucket together.
    shared = with_api(redis_settings, rate_limit="3/minute", rate_limit_storage=redis_url)
    async with serve(shared) as one, serve(shared) as two:
        assert (await one.client.get("/v1/predictions/x")).status_code == 404
        assert (await two.client.get("/v1/predictions/x")).status_code == 404
        assert (await one.client.get("/v1/predictions/x")).status_code == 404
        assert_error(await two.client.get("/v1/predictions/x"), 429, "rate_limited")


async def test_failing_rate_limit_storage_lets_requests_through(api_settings: Settings) -> None:
    settings = with_api(api_settings, rate_limit="1/minute", rate_limit_storage="redis://127.0.0.1:1/0")
    async with serve(settings) as api:
        for _ in range(3):
            assert (await api.client.get("/v1/predictions/x")).status_code == 404


def test_rate_limit_setting_values() -> None:
    for off in (None, "", " ", "null", "None", "off"):
        assert parse_rate_limit(off) is None
    limit = parse_rate_limit("5 per 2 seconds")
    assert limit is not None and (limit.amount, limit.multiples, limit.GRANULARITY.name) == (5, 2, "second")
    with pytest.raises(ValueError, match=r"api\.rate_limit"):
        parse_rate_limit("lots")


def test_a_bad_rate_limit_setting_is_refused_at_start(api_settings: Settings) -> None:
    with pytest.raises(ValueError, match=r"api\.rate_limit"):
        create_app(with_api(api_settings, rate_limit="lots"))


# -- unknown schema versions -------------------------------------------------------------------


async def send_raw(settings: Settings, topic: str, *values: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        for value in values:
            key = str(value.get("id", "")).encode()
            await producer.send_and_wait(topic, value=json.dumps(value).encode(), key=key)
    finally:
        await producer.stop()


async def test_unknown_result_versions_are_counted_logged_once_and_end_the_wait(
    api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="api.consumer")
    async with serve(api_settings) as api:
        c = api.client
        r = await c.post("/v1/images", files={"file": ("a.jpg", jpeg_bytes(3), "image/jpeg")})
        image_id = r.json()["id"]
        waiting = asyncio.create_task(c.get(f"/v1/predictions/{image_id}?wait=5"))
        await eventually_async(
            lambda: len(api.state.waiters), 5, interval=0.01, message="the GET to park on its waiter"
        )

        newer = prediction(image_id).model_dump(mode="json")
        newer["v"] = 2
        await send_raw(api_settings, api_settings.topics.predictions, newer, {**newer, "id": "other-id"})
        r = await waiting
        assert r.status_code == 200 and r.json()["status"] == "failed", r.text
        assert r.json()["error"]["reason"] == "schema"
        assert "version 2" in r.json()["error"]["message"]

        weird = {**dead_letter("x").model_dump(mode="json"), "v": "9" * 300, "id": None}
        await send_raw(api_settings, api_settings.topics.deadletters, weird)
        name = "pawstream_api_unknown_schema_version_records_total"

        async def counted() -> tuple[tuple[float, float], str]:  # the counts first: they show on a failure
            text = (await c.get("/metrics")).text
            return (
                metric(text, name, kind="prediction", version="2"),
                metric(text, name, kind="deadletter", version="other"),
            ), text

        _, text = await eventually_async(
            counted, 10, until=lambda seen: seen[0] == (2, 1), message="unknown versions counted (2, 1)"
        )
        assert label_values(text, "version") == {"2", "other"}

        # A prediction this API reads replaces the "unreadable" failure.
        await send_results(api_settings, prediction(image_id, "dog"))
        await eventually_async(
            lambda: c.get(f"/v1/predictions/{image_id}"),
            10,
            until=lambda r: r.json()["status"] == "done",
            message="the v1 prediction to replace the failure",
        )

    logged = [rec for rec in caplog.records if "unknown schema version" in rec.getMessage()]
    assert sorted((getattr(rec, "kind", ""), getattr(rec, "version", "")) for rec in logged) == [
        ("deadletter", "other"),
        ("prediction", "2"),
    ]


# -- ?wait answers what the store holds --------------------------------------------------------


def record(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"", value, None, 0, len(value), ())


@pytest.fixture(params=["sqlite", "redis"])
async def race_store(request: pytest.FixtureRequest, api_settings: Settings) -> Any:
    settings = with_api(api_settings, store=request.param)
    if request.param == "redis":
        # Requested only here: the SQLite case runs (and passes) on a machine without Redis.
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        settings = with_api(settings, redis_url=url, redis_prefix=prefix)
    api = settings.api
    store = make_store(api)
    await store.open()
    yield store
    await store.close()


async def test_a_waiter_gets_the_state_the_store_holds(
    api_settings: Settings, race_store: ResultStore
) -> None:
    """A dead letter and a prediction for one id: the store keeps ``done``, and so must the answer
    of a waiting request, whether the two came in one batch (dead letter first) or apart."""
    waiters = Waiters(10)
    consumer = ResultConsumer(api_settings, race_store, waiters, ApiMetrics())
    predictions = TopicPartition(api_settings.topics.predictions, 0)
    deadletters = TopicPartition(api_settings.topics.deadletters, 0)

    # One batch, the dead letter's partition first.
    with waiters.watch("same-batch") as fut:
        await consumer.apply(
            {
                deadletters: [record(deadletters, 0, dead_letter("same-batch").to_bytes())],
                predictions: [record(predictions, 0, prediction("same-batch").to_bytes())],
            }
        )
        assert fut.done()
        assert fut.result().status is Status.DONE
    stored = await race_store.get("same-batch")
    assert stored is not None and stored.status is Status.DONE

    # Done first; later a dead letter for the same id (a replay) reaches a new waiter, as a
    # POST ?wait watches before it publishes.
    await consumer.apply({predictions: [record(predictions, 1, prediction("later").to_bytes())]})
    with waiters.watch("later") as fut:
        await consumer.apply({deadletters: [record(deadletters, 1, dead_letter("later").to_bytes())]})
        assert fut.done()
        assert fut.result().status is Status.DONE
        assert fut.result() == await race_store.get("later")

    # A dead letter alone is what the store holds: failed.
    with waiters.watch("failed-only") as fut:
        await consumer.apply({deadletters: [record(deadletters, 2, dead_letter("failed-only").to_bytes())]})
        assert fut.result().status is Status.FAILED
    assert await race_store.load_offsets([predictions.topic, deadletters.topic]) == {
        (predictions.topic, 0): 2,
        (deadletters.topic, 0): 3,
    }


async def test_broker_down_answers_without_client_error_text(api_settings: Settings) -> None:
    kafka = api_settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    settings = with_api(api_settings.model_copy(update={"kafka": kafka}), send_timeout_s=2.0)
    async with serve(settings, ready=False) as api:
        r = await api.client.post("/v1/feedback", json={"id": "img-1", "label": "cat"})
    message = assert_error(r, 503, "broker_unavailable")
    assert "127.0.0.1" not in message and "Error" not in message


def test_limited_routes_document_429_with_retry_after(api_settings: Settings) -> None:
    paths = create_app(api_settings).openapi()["paths"]
    limited = {
        ("post", "/v1/images"),
        ("post", "/v1/feedback"),
        ("get", "/v1/predictions/{image_id}"),
        ("get", "/v1/monitoring"),
        ("get", "/v1/model"),
    }
    for path, operations in paths.items():
        for method, operation in operations.items():
            documented = operation["responses"].get("429")
            if (method, path) in limited:
                assert documented is not None and "Retry-After" in documented["headers"], (method, path)
            else:
                assert documented is None, (method, path)  # health and metrics are never limited


async def test_result_records_the_parser_chokes_on_never_stall_the_consumer(api_settings: Settings) -> None:
    """JSON nested past the recursion limit, and a timestamp outside UTC's range, are skipped."""
    producer = AIOKafkaProducer(**producer_kwargs(api_settings.kafka))
    await producer.start()
    try:
        nested = b"[" * 100_000 + b"]" * 100_000
        await producer.send_and_wait(api_settings.topics.predictions, value=nested, key=b"nested")
        early = {**dead_letter("early").model_dump(mode="json"), "created_at": "0001-01-01T00:00:00+01:00"}
        await producer.send_and_wait(
            api_settings.topics.deadletters, value=json.dumps(early).encode(), key=b"early"
        )
    finally:
        await producer.stop()
    await send_results(api_settings, prediction("after-the-bad-ones"))
    async with serve(api_settings) as api:
        await eventually_async(  # the good record behind the bad ones is stored: the consumer did not stall
            lambda: api.client.get("/v1/predictions/after-the-bad-ones"),
            20,
            until=lambda r: r.status_code == 200,
            message="the good record behind the bad ones to be stored",
        )
        assert (await api.client.get("/readyz")).status_code == 200
        assert (await api.client.get("/v1/predictions/early")).status_code == 404


async def test_a_utf16_body_is_a_400_whatever_its_nesting(api_settings: Settings) -> None:
    body = ("[" * 600 + "]" * 600).encode("utf-16-le")  # json.loads(bytes) would detect UTF-16
    async with serve(api_settings) as api:
        r = await api.client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("invalid_json", "json_too_deep")


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    from api.ratelimit import bucket_for_address

    assert bucket_for_address("2001:db8:1:2::a") == bucket_for_address("2001:db8:1:2:ffff::1")
    assert bucket_for_address("2001:db8:1:2::a") != bucket_for_address("2001:db8:1:3::a")
    assert bucket_for_address("::ffff:192.0.2.7") == bucket_for_address("192.0.2.7")
    assert bucket_for_address("192.0.2.7") != bucket_for_address("192.0.2.8")
    assert bucket_for_address(None) == "addr:unknown"
