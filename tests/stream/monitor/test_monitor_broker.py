"""The monitor on the real broker: exact windowed accuracy, duplicates, and a drift alert event.

Predictions and feedback are published straight to their topics (no model needed). Event
times are chosen so windows are known in advance; the monitor's grace period is long, so no
window closes on the wall clock. Windows close by event time when a later "closer" pair
arrives, which the test sends only after the monitor has committed everything before it:
the expected figures are then exact, whatever the partition interleaving.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pawstream import offsets
from pawstream.kafka import aiokafka_common, consumer_kwargs, producer_kwargs
from pawstream.processes import stop_process
from pawstream.schemas import FeedbackEvent, MonitoringEvent, PredictionEvent
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from tests.support import monitor_events as synth
from tests.support.kafka import TopicReader
from tests.support.monitors import scrape_metrics, start_monitor
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.integration

W = 10.0  # window seconds
GRACE = 600.0
STOP_S = 30.0  # SIGTERM grace before SIGKILL for a monitor process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_profile(path: Path, world: synth.EmbeddingWorld) -> None:
    """A reference profile in training's npz format (training/profile.py)."""
    p = synth.profile(world, n=1000, seed=7, version=None)
    assert p.embedding_sample is not None and p.embedding_mean is not None and p.embedding_var is not None
    np.savez(
        path,
        labels=np.array(p.labels),
        class_mix=p.class_mix,
        confidence=p.confidence.astype(np.float32),
        embedding_mean=p.embedding_mean.astype(np.float32),
        embedding_std=np.sqrt(p.embedding_var).astype(np.float32),
        embedding_sample=p.embedding_sample,
        n=np.int64(p.n),
    )


@pytest.fixture
def monitor_settings(settings: Settings, tmp_path: Path) -> Settings:
    world = synth.EmbeddingWorld()
    _write_profile(tmp_path / "profile.npz", world)
    mon = settings.monitoring.model_copy(
        update={
            "app_id": settings.worker.app_id.replace("-worker", "-monitor"),
            "window_s": W,
            "window_grace_s": GRACE,
            "metrics_port": _free_port(),
            "reference_path": tmp_path / "profile.npz",
            "drift_window_events": 100,
            "mmd_bootstrap": 1000,
            "lag_interval_s": 1.0,
        }
    )
    # A short session: a restarted monitor waits for the old member's session to lapse on Tansu.
    kafka = settings.kafka.model_copy(update={"session_timeout_s": 4.0, "heartbeat_interval_s": 0.5})
    return settings.model_copy(update={"monitoring": mon, "kafka": kafka})


@pytest.fixture
def monitor_process(monitor_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_monitor(monitor_settings, tmp_path / "monitor.log")
    try:
        yield proc
    finally:
        stop_process(proc, STOP_S)


async def _send(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        futs = [await producer.send(topic, value=value, key=key) for topic, key, value in records]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def _pred(ev: PredictionEvent, settings: Settings) -> tuple[str, bytes, bytes]:
    return settings.topics.predictions, ev.record_key(), ev.to_bytes()


def _shadow(ev: PredictionEvent, settings: Settings) -> tuple[str, bytes, bytes]:
    return settings.topics.shadow_predictions, ev.record_key(), ev.to_bytes()


def _fb(ev: FeedbackEvent, settings: Settings) -> tuple[str, bytes, bytes]:
    return settings.topics.feedback, ev.record_key(), ev.to_bytes()


def _as_v2(record: tuple[str, bytes, bytes]) -> tuple[str, bytes, bytes]:
    topic, key, value = record
    return topic, key, json.dumps({**json.loads(value), "v": 2}).encode()


async def _wait_committed(
    settings: Settings,
    timeout_s: float,
    proc: subprocess.Popen[bytes],
    log: Path,
    topics: tuple[str, ...] = (),
) -> None:
    """Until the monitor group has committed every record of the input topics (by default the
    predictions and feedback topics; every partition of each must have records)."""
    group = settings.monitoring.app_id
    tps = [
        TopicPartition(t, p)
        for t in topics or (settings.topics.predictions, settings.topics.feedback)
        for p in range(settings.topics.output_partitions)
    ]
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings.kafka), group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**aiokafka_common(settings.kafka))
    await consumer.start()
    await admin.start()
    try:
        ends = await offsets.end_offsets(consumer, tps)

        async def behind() -> dict[str, int]:
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            lag = {str(tp): ends[tp] - (committed[tp].offset if tp in committed else -1) for tp in tps}
            if any(v > 0 for v in lag.values()) and proc.poll() is not None:
                raise AssertionError(f"monitor exited: behind {lag}\n{tail()}")
            return lag

        def tail() -> str:
            return log.read_bytes()[-3000:].decode(errors="replace")

        await eventually_async(
            behind,
            timeout_s,
            interval=0.2,
            until=lambda lag: all(v <= 0 for v in lag.values()),
            message=lambda: f"the monitor to catch up (committed offsets behind the ends)\n{tail()}",
        )
    finally:
        await admin.close()
        await consumer.stop()


async def test_windowed_accuracy_exact_duplicates_ignored_and_drift_alert_on_topic(
    monitor_settings: Settings, monitor_process: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    s = monitor_settings
    await ensure_topics(s)
    world = synth.EmbeddingWorld()
    rng = np.random.default_rng(11)
    t0 = math.floor(time.time() / W) * W - 3 * W  # three whole windows, just behind the wall clock
    emb, cls = world.sample(300, rng)
    conf = synth.profile(world, seed=8).confidence
    preds, fbs = [], []
    for i in range(300):  # 100 pairs per window; every 10th label wrong
        t = t0 + i * (W / 100)
        label = ["cat", "dog"][cls[i]]
        given = label if i % 10 else ("dog" if label == "cat" else "cat")
        preds.append(
            synth.prediction(
                f"img-{i:04d}", label, t, confidence=float(conf[i]), embedding=emb[i], version="v1"
            )
        )
        fbs.append(synth.feedback(f"img-{i:04d}", given, t + 0.01))
    # Labels before predictions for the first 50, after for the rest; 30 of each redelivered.
    records = [_fb(f, s) for f in fbs[:50]]
    records += [_pred(p, s) for p in preds] + [_pred(p, s) for p in preds[100:130]]
    records += [_fb(f, s) for f in fbs[50:]] + [_fb(f, s) for f in fbs[200:230]]
    # A newer writer's records (v=2): counted per topic and version, never joined or windowed.
    records += [_as_v2(_pred(synth.prediction("v2-img", "cat", t0 + 1), s))]
    records += [_as_v2(_fb(synth.feedback("v2-img", "cat", t0 + 1), s))]
    log = tmp_path / "monitor.log"
    async with TopicReader(s, s.topics.monitoring) as monitoring:
        await _send(s, records)
        await _wait_committed(s, 90, monitor_process, log)
        assert monitor_process.poll() is None, log.read_text()[-3000:]
        # The closer pair: its event time is past the three windows' end + grace.
        t_close = t0 + 3 * W + GRACE + 1
        await _send(
            s,
            [
                _pred(synth.prediction("closer", "cat", t_close, version="v1"), s),
                _fb(synth.feedback("closer", "cat", t_close), s),
            ],
        )

        def accuracy_windows(rs: list[dict]) -> list[dict]:
            return [r for r in rs if r.get("metric") == "accuracy" and r.get("kind") == "window"]

        await monitoring.wait_until(lambda rs: len(accuracy_windows(rs)) >= 3, 30, "3 accuracy windows")
        windows = sorted(
            (MonitoringEvent.model_validate(r) for r in accuracy_windows(monitoring.records)),
            key=lambda e: e.window_start,
        )
        assert [
            (e.window_start.timestamp() - t0, e.window_events, e.value, e.model_version) for e in windows
        ] == [
            (0.0, 100, 0.9, "v1"),
            (W, 100, 0.9, "v1"),
            (2 * W, 100, 0.9, "v1"),
        ]
        assert not [r for r in monitoring.records if r.get("kind") == "alert"]  # clean data, 0.9 >= floor
        # Three clean drift windows were tested (300 predictions), none drifted.
        drift = [
            r
            for r in monitoring.records
            if r.get("metric") in ("class_mix_psi", "confidence_ks", "embedding_mmd")
        ]
        assert len(drift) == 9 and all(r["kind"] == "window" for r in drift)

        # A drifted window: 100 predictions with shifted embeddings and unsure confidences.
        demb, dcls = world.sample(100, rng, shift=1.0)
        dconf = synth.confidences(100, rng, a=2.0, b=2.0)
        drifted = [
            synth.prediction(
                f"drift-{i:03d}",
                ["cat", "dog"][dcls[i]],
                t_close + i,
                confidence=float(dconf[i]),
                embedding=demb[i],
            )
            for i in range(100)
        ]
        await _send(s, [_pred(p, s) for p in drifted])
        await monitoring.wait_until(
            lambda rs: any(r.get("kind") == "alert" and r.get("metric") == "embedding_mmd" for r in rs),
            30,
            "an embedding drift alert",
        )
    alert = next(
        MonitoringEvent.model_validate(r)
        for r in monitoring.records
        if r.get("kind") == "alert" and r.get("metric") == "embedding_mmd"
    )
    # The closer (no embedding) shares this drift window with 99 drifted predictions.
    assert alert.threshold is not None and alert.value > alert.threshold and alert.window_events == 99

    m = scrape_metrics(s.monitoring.metrics_port)
    v1 = '{"model_version": "v1"}'
    assert m["pawstream_monitor_window_accuracy" + v1] == 0.9
    assert m["pawstream_monitor_predictions_total" + v1] == 401  # 300 + closer + 100 drifted, no duplicates
    assert m["pawstream_monitor_labelled_total" + v1] == 301
    assert m["pawstream_monitor_correct_total" + v1] == 271
    assert m['pawstream_monitor_duplicates_total{"kind": "prediction"}'] == 30
    assert m['pawstream_monitor_duplicates_total{"kind": "feedback"}'] == 30
    assert m['pawstream_monitor_drift_detected{"metric": "embedding_mmd", "model_version": "v1"}'] == 1
    assert m["pawstream_monitor_label_coverage" + v1] == pytest.approx(301 / 401)
    for topic in (s.topics.predictions, s.topics.feedback):
        v2 = json.dumps({"topic": topic, "version": "2"}, sort_keys=True)
        assert m["pawstream_monitor_unknown_schema_versions_total" + v2] == 1
        assert "pawstream_monitor_invalid_events_total" + json.dumps({"topic": topic}) not in m
    lag_key = json.dumps({"group": s.monitoring.app_id, "topic": s.topics.predictions}, sort_keys=True)
    assert "pawstream_consumer_lag" + lag_key in m


async def test_join_state_survives_a_monitor_restart(monitor_settings: Settings, tmp_path: Path) -> None:
    """Pending predictions and match tombstones live in the changelogged table: after a restart,
    late labels still join, and redelivered events are still duplicates. The inputs of the second
    phase are already waiting when the restarted monitor finishes its table recovery, which is
    what made this test flaky (stream/monitor/recovery.py)."""
    await _restart_keeps_join_state(monitor_settings, tmp_path, {}, challenger=False)


# A known defect, not fixed yet: with the shadow topic as a third source and the challenger's
# table as a second one, a restarted monitor under load sometimes skips one record waiting on a
# source partition when recovery ends (2 of 3 full CI runs on a loaded 2-vCPU machine: a
# redelivered prediction not seen, 29 duplicates for 30; a late label not seen, a window of 39
# for 40), the symptom recovery.py fixed for one table and two topics. It passed 5 of 5 alone.
@pytest.mark.xfail(
    reason="known defect: a restarted monitor with the shadow table may skip one waiting record under load",
    strict=False,
)
async def test_join_state_with_the_challenger_table_survives_a_monitor_restart(
    monitor_settings: Settings, tmp_path: Path
) -> None:
    """As above, with challenger predictions on the shadow topic and their own table."""
    await _restart_keeps_join_state(monitor_settings, tmp_path, {}, challenger=True)


# Faust moves table changelog records to Kafka from a buffer, one at a time, in a background task;
# its commit-time flush gives up when one record takes over 0.1 s (stream/monitor/changelog.py).
# Slowing that task down (a loaded host, a slow broker) makes the gap between "source offset
# committed" and "changelog record on the broker" wide enough to hit on every run.
_SLOW_CHANGELOG_BUFFER = """
import asyncio

from faust.transport import producer

_send_pending = producer.ProducerBuffer._send_pending


async def _slow_send_pending(self, fut):
    await asyncio.sleep({delay_s})
    await _send_pending(self, fut)


producer.ProducerBuffer._send_pending = _slow_send_pending
"""


async def test_join_state_survives_a_restart_while_the_changelog_buffer_lags(
    monitor_settings: Settings, tmp_path: Path
) -> None:
    """Join state survives a restart even when each changelog record waits 0.15 s in Faust's
    producer buffer (stream/monitor/changelog.py). Before that fix the first monitor committed
    its inputs with join updates still in the buffer and its stop dropped them: the restarted
    monitor lost 14 of the 40 pending joins."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SLOW_CHANGELOG_BUFFER.format(delay_s=0.15))
    path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    # Without challenger predictions: each record waits 0.15 s, and the challenger's table (which
    # still takes every label) already doubles the label records; the plain restart test covers it.
    await _restart_keeps_join_state(monitor_settings, tmp_path, {"PYTHONPATH": path}, challenger=False)


async def _restart_keeps_join_state(
    monitor_settings: Settings, tmp_path: Path, extra_env: dict[str, str], challenger: bool
) -> None:
    s = monitor_settings.model_copy(
        update={"monitoring": monitor_settings.monitoring.model_copy(update={"reference_path": None})}
    )
    await ensure_topics(s)
    log = tmp_path / "monitor.log"
    t0 = math.floor(time.time() / W) * W - W
    preds = [synth.prediction(f"r-{i:03d}", "cat", t0 + i * 0.1) for i in range(60)]
    # The challenger's join is a table of its own: it must survive the restart the same way.
    shadows = [
        synth.prediction(p.id, "dog" if i % 2 else "cat", t0 + i * 0.1, version="v2")
        for i, p in enumerate(preds)
        if challenger
    ]
    topics: tuple[str, ...] = (s.topics.predictions, s.topics.feedback)
    if challenger:
        topics += (s.topics.shadow_predictions,)
    first = start_monitor(s, log, extra_env)
    try:
        # 20 pairs complete before the restart; 40 predictions wait for labels.
        await _send(
            s,
            [_pred(p, s) for p in preds]
            + [_shadow(p, s) for p in shadows]
            + [_fb(synth.feedback(p.id, "cat", t0 + 1), s) for p in preds[:20]],
        )
        await _wait_committed(s, 90, first, log, topics)
    finally:
        assert stop_process(first, STOP_S) == 0, log.read_text()[-3000:]
    second = start_monitor(s, log, extra_env)
    try:
        async with TopicReader(s, s.topics.monitoring) as monitoring:
            late = [
                _fb(synth.feedback(p.id, "dog" if i % 4 == 0 else "cat", t0 + 2), s)
                for i, p in enumerate(preds[20:])
            ]
            redelivered = [_pred(p, s) for p in preds[:30]] + [
                _fb(synth.feedback(p.id, "dog", t0 + 1), s) for p in preds[:20]
            ]
            redelivered += [_shadow(p, s) for p in shadows[:30]]
            await _send(s, late + redelivered)
            await _wait_committed(s, 90, second, log, topics)
            t_close = t0 + W + GRACE + 1
            await _send(
                s,
                [
                    _pred(synth.prediction("closer", "cat", t_close), s),
                    _fb(synth.feedback("closer", "cat", t_close), s),
                ],
            )
            await monitoring.wait_until(
                lambda rs: any(r.get("metric") == "accuracy" for r in rs), 30, "an accuracy window"
            )
        window = next(
            MonitoringEvent.model_validate(r) for r in monitoring.records if r.get("metric") == "accuracy"
        )
        # Only the 40 labels that arrived after the restart fall in this process's window (the 20
        # earlier pairs were counted by the first process); 10 of them are wrong.
        assert (window.window_events, window.value) == (40, 0.75)
        m = scrape_metrics(s.monitoring.metrics_port)
        # At least the deliberate redeliveries; Faust may also re-deliver a few records the first
        # process handled after its last commit (at-least-once). Those are counted as duplicates
        # and, as the exact window and labelled figures show, never counted twice.
        assert m['pawstream_monitor_duplicates_total{"kind": "prediction"}'] >= 30
        assert m['pawstream_monitor_duplicates_total{"kind": "feedback"}'] >= 20
        assert m['pawstream_monitor_labelled_total{"model_version": "v1"}'] == 41  # 40 late labels + closer
        # The challenger's 40 pending predictions joined their late labels after the restart:
        # labels "dog" (i % 4 == 0) and "cat" otherwise; v2 says "dog" for odd i, so it is right
        # only on i % 4 == 2 (10 of 40). Its redeliveries were duplicates.
        if challenger:
            v2 = json.dumps({"role": "challenger", "version": "v2"}, sort_keys=True)
            assert m["pawstream_monitor_model_labelled" + v2] == 40
            assert m["pawstream_monitor_model_cumulative_accuracy" + v2] == 0.25
            assert m['pawstream_monitor_duplicates_total{"kind": "shadow_prediction"}'] >= 30
    finally:
        stop_process(second, STOP_S)


async def test_champion_and_challenger_accuracy_side_by_side(
    monitor_settings: Settings, tmp_path: Path
) -> None:
    """Champion v1 on the predictions topic, a worse challenger v2 on the shadow topic, one label
    per id: the monitor reports both versions' feedback accuracy, the challenger's lower, and the
    champion's figures are those it always reported."""
    s = monitor_settings.model_copy(
        update={"monitoring": monitor_settings.monitoring.model_copy(update={"reference_path": None})}
    )
    await ensure_topics(s)
    log = tmp_path / "monitor.log"
    t0 = math.floor(time.time() / W) * W - W
    n = 120
    champion = [synth.prediction(f"s-{i:03d}", "cat", t0 + i * 0.05, confidence=0.9) for i in range(n)]
    # Wrong on 1 id in 10 for the champion, on 4 in 10 for the challenger.
    challenger = [
        synth.prediction(
            f"s-{i:03d}", "dog" if 1 <= i % 10 <= 3 else "cat", t0 + i * 0.05, version="v2", confidence=0.8
        )
        for i in range(n)
    ]
    labels = [
        synth.feedback(f"s-{i:03d}", "dog" if i % 10 == 0 else "cat", t0 + i * 0.05 + 1) for i in range(n)
    ]
    # A third of the labels come before both predictions, the challenger's predictions of another
    # third before the champion's; 20 shadow predictions are redelivered.
    records = [_fb(f, s) for f in labels[:40]] + [_shadow(p, s) for p in challenger[40:80]]
    records += [_pred(p, s) for p in champion] + [_shadow(p, s) for p in challenger[:40] + challenger[80:]]
    records += [_fb(f, s) for f in labels[40:]] + [_shadow(p, s) for p in challenger[:20]]
    proc = start_monitor(s, log)
    try:
        await _send(s, records)
        topics = (s.topics.predictions, s.topics.shadow_predictions, s.topics.feedback)
        await _wait_committed(s, 90, proc, log, topics)
        assert proc.poll() is None, log.read_text()[-3000:]
        m = scrape_metrics(s.monitoring.metrics_port)
    finally:
        stop_process(proc, STOP_S)

    def model(name: str, role: str, version: str) -> float:
        return m[name + json.dumps({"role": role, "version": version}, sort_keys=True)]

    acc = "pawstream_monitor_model_cumulative_accuracy"
    assert model(acc, "champion", "v1") == pytest.approx(0.9)
    assert model(acc, "challenger", "v2") == pytest.approx(0.6)
    for role, version in (("champion", "v1"), ("challenger", "v2")):
        assert model("pawstream_monitor_model_labelled", role, version) == n
        assert model("pawstream_monitor_model_predictions", role, version) == n
    # One confidence bin each: ECE = |accuracy - confidence|.
    assert model("pawstream_monitor_model_cumulative_ece", "champion", "v1") == pytest.approx(0.0, abs=1e-9)
    assert model("pawstream_monitor_model_cumulative_ece", "challenger", "v2") == pytest.approx(0.2)
    # The champion-only figures, as before shadow scoring: the challenger is not in them.
    assert m['pawstream_monitor_labelled_total{"model_version": "v1"}'] == n
    assert m['pawstream_monitor_cumulative_accuracy{"model_version": "v1"}'] == pytest.approx(0.9)
    assert 'pawstream_monitor_labelled_total{"model_version": "v2"}' not in m
    assert m['pawstream_monitor_duplicates_total{"kind": "shadow_prediction"}'] == 20
    assert 'pawstream_monitor_duplicates_total{"kind": "prediction"}' not in m
