"""The monitor without Kafka: windowed accuracy, coverage, alerts and drift phases."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import generate_latest
from threadpoolctl import threadpool_limits

from api.monitor_provider import summary_from_metrics
from pawstream.settings import MonitoringSettings
from stream.monitor.calibration import Calibration
from stream.monitor.core import Monitor
from tests.support import monitor_events as synth
from training.calibration import ece


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(limits=1, user_api="blas"):
        yield


T0 = 1_700_000_000.0  # a multiple of 10: windows start at T0 + 10k


def settings(**kw: object) -> MonitoringSettings:
    base: dict[str, object] = {"window_s": 10.0, "window_grace_s": 2.0, "accuracy_floor": 0.85}
    return MonitoringSettings(**{**base, **kw})


def test_windowed_and_cumulative_accuracy_are_exact() -> None:
    """300 pairs over 3 windows with every 10th label wrong: 0.9 per window and overall."""
    mon = Monitor(settings(), profile=None)
    events = []
    for i in range(300):
        t = T0 + i * 0.1  # 100 pairs per 10 s window
        truth = "cat" if i % 3 else "dog"
        label = truth if i % 10 else ("dog" if truth == "cat" else "cat")
        events += mon.on_prediction(synth.prediction(f"id{i}", truth, t), now=t)
        events += mon.on_feedback(synth.feedback(f"id{i}", label, t + 0.05), now=t)
    events += mon.tick(T0 + 40)
    windows = [e for e in events if e.kind == "window" and e.metric == "accuracy"]
    assert [(e.window_start.timestamp() - T0, e.window_events, e.value) for e in windows] == [
        (0.0, 100, 0.9),
        (10.0, 100, 0.9),
        (20.0, 100, 0.9),
    ]
    assert not [e for e in events if e.kind == "alert"]
    tot = mon.accuracy.totals["v1"]
    assert (tot.predictions, tot.labelled, tot.confusion.correct, tot.coverage) == (300, 300, 270, 1.0)
    summary = mon.summary()["versions"]["v1"]
    assert summary["cumulative_accuracy"] == 0.9 and summary["label_coverage"] == 1.0
    # "dog" is predicted for the 100 ids with i % 3 == 0; 10 of them (i % 30 == 0) are labelled cat.
    # 20 cat predictions (i % 10 == 0, i % 3 != 0) are labelled dog: 110 dogs by label.
    assert summary["per_class"]["dog"]["precision"] == pytest.approx(90 / 100)
    assert summary["per_class"]["dog"]["recall"] == pytest.approx(90 / 110)


def test_windows_close_by_event_time_and_late_pairs_count_only_cumulatively() -> None:
    mon = Monitor(settings(), profile=None)
    mon.on_prediction(synth.prediction("a", "cat", T0 + 1), now=T0 + 1)
    assert mon.on_feedback(synth.feedback("a", "cat", T0 + 2), now=T0 + 2) == []
    # A pair at T0+12.5 is past window 0's end + grace (T0+12): window 0 closes.
    mon.on_prediction(synth.prediction("b", "cat", T0 + 12.5), now=T0 + 12.5)
    out = mon.on_feedback(synth.feedback("b", "dog", T0 + 12.5), now=T0 + 12.5)
    assert [(e.metric, e.value, e.window_events) for e in out] == [("accuracy", 1.0, 1)]
    # A label for window 0 arriving now is late.
    mon.on_prediction(synth.prediction("c", "cat", T0 + 3), now=T0 + 13)
    assert mon.on_feedback(synth.feedback("c", "cat", T0 + 4), now=T0 + 13) == []
    assert mon.accuracy.totals["v1"].late == 1
    assert mon.summary()["versions"]["v1"]["cumulative_accuracy"] == pytest.approx(2 / 3)


def test_accuracy_below_floor_alerts_and_needs_enough_labels() -> None:
    mon = Monitor(settings(accuracy_min_labels=20), profile=None)
    events = []
    for i in range(40):  # 40 pairs in window 0, half wrong
        t = T0 + i * 0.2
        events += mon.on_prediction(synth.prediction(f"x{i}", "cat", t, version="v7"), now=t)
        events += mon.on_feedback(synth.feedback(f"x{i}", "cat" if i % 2 else "dog", t), now=t)
    for i in range(5):  # 5 wrong pairs in window 1: below the floor but too few to alert
        t = T0 + 10 + i
        events += mon.on_prediction(synth.prediction(f"y{i}", "cat", t, version="v7"), now=t)
        events += mon.on_feedback(synth.feedback(f"y{i}", "dog", t), now=t)
    events += mon.tick(T0 + 100)
    alerts = [e for e in events if e.kind == "alert"]
    assert [(a.metric, a.value, a.threshold, a.model_version, a.window_events) for a in alerts] == [
        ("accuracy", 0.5, 0.85, "v7", 40)
    ]
    # The last window was too small to judge: the status stays on the last conclusive one.
    assert mon.summary()["status"] == "alert"


def test_coverage_and_expiry() -> None:
    mon = Monitor(settings(label_horizon_s=60), profile=None)
    for i in range(10):
        mon.on_prediction(synth.prediction(f"p{i}", "cat", T0), now=T0)
    for i in range(4):
        mon.on_feedback(synth.feedback(f"p{i}", "cat", T0 + 5), now=T0 + 5)
    mon.on_feedback(synth.feedback("orphan", "cat", T0 + 5), now=T0 + 5)
    assert mon.accuracy.totals["v1"].coverage == pytest.approx(0.4)
    assert mon.sweep(T0 + 59) == 0
    assert mon.sweep(T0 + 61) == 6  # six predictions never labelled
    assert mon.accuracy.totals["v1"].expired == 6
    assert mon.sweep(T0 + 66) == 1  # the orphan label
    assert mon.metrics.registry.get_sample_value("pawstream_monitor_expired_total", {"kind": "feedback"}) == 1
    assert (
        mon.metrics.registry.get_sample_value("pawstream_monitor_label_coverage", {"model_version": "v1"})
        == 0.4
    )
    removed = {"reason": "expired"}
    # 10 predictions (4 matched, as tombstones) and the orphan label: every removal is counted.
    assert mon.metrics.registry.get_sample_value("pawstream_monitor_join_removed_total", removed) == 11


def test_a_full_join_table_evicts_the_oldest_and_counts_them() -> None:
    mon = Monitor(settings(join_max_entries=100), profile=None)
    for i in range(105):  # event times T0 .. T0 + 104: the first five are the oldest
        mon.on_prediction(synth.prediction(f"p{i}", "cat", T0 + i), now=T0 + 200)
    assert len(mon.join.store) == 100 and "p4" not in mon.join.store and "p5" in mon.join.store
    get = mon.metrics.registry.get_sample_value
    assert get("pawstream_monitor_join_removed_total", {"reason": "evicted"}) == 5
    assert get("pawstream_monitor_expired_predictions_total", {"model_version": "v1"}) == 5
    assert mon.accuracy.totals["v1"].expired == 5
    # An evicted prediction's late label starts a new wait instead of joining.
    assert mon.on_feedback(synth.feedback("p0", "cat", T0 + 201), now=T0 + 201) == []
    assert mon.accuracy.totals["v1"].labelled == 0


def test_duplicates_do_not_change_figures() -> None:
    mon = Monitor(settings(), profile=None)
    for _ in range(3):  # at-least-once delivery: everything arrives three times
        mon.on_prediction(synth.prediction("a", "cat", T0), now=T0)
        mon.on_feedback(synth.feedback("a", "dog", T0 + 1), now=T0 + 1)
    tot = mon.accuracy.totals["v1"]
    assert (tot.predictions, tot.labelled, tot.confusion.correct) == (1, 1, 0)
    assert (
        mon.metrics.registry.get_sample_value("pawstream_monitor_duplicates_total", {"kind": "prediction"})
        == 2
    )


def _phase(
    mon: Monitor, world: synth.EmbeddingWorld, rng: np.random.Generator, n: int, start: int, drift: bool
) -> list[tuple[int, str]]:
    """Feed n predictions; returns (event index, metric) of each drift alert."""
    alerts = []
    emb, cls = world.sample(n, rng, shift=1.0 if drift else 0.0)
    conf = synth.confidences(n, rng, a=2.0, b=2.0) if drift else synth.confidences(n, rng)
    for i in range(n):
        k = start + i
        ev = synth.prediction(
            f"e{k}", ["cat", "dog"][cls[i]], T0 + k, confidence=float(conf[i]), embedding=emb[i]
        )
        alerts += [(k, e.metric) for e in mon.on_prediction(ev, now=T0 + k) if e.kind == "alert"]
    return alerts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_phase_no_drift_alert_drifted_phase_flagged_within_200(seed: int) -> None:
    """1,200 clean events raise no drift alert; a drifted phase starting off a window boundary
    (event 1,250) is flagged within 200 events of its start."""
    world = synth.EmbeddingWorld()
    mon = Monitor(settings(drift_window_events=100), profile=synth.profile(world, seed=100 + seed))
    rng = np.random.default_rng(seed)
    clean = _phase(mon, world, rng, 1250, 0, drift=False)
    assert clean == []
    drifted = _phase(mon, world, rng, 300, 1250, drift=True)
    assert drifted, "drift never flagged"
    first = min(k for k, _ in drifted)
    assert first - 1250 < 200
    assert {m for _, m in drifted} >= {"embedding_mmd", "confidence_ks"}
    # Drift figures reach the gauges, next to their thresholds.
    reg = mon.metrics.registry
    labels = {"model_version": "v1", "metric": "embedding_mmd"}
    assert reg.get_sample_value("pawstream_monitor_drift_detected", labels) == 1
    stat = reg.get_sample_value("pawstream_monitor_drift_statistic", labels)
    thr = reg.get_sample_value("pawstream_monitor_drift_threshold", labels)
    assert stat is not None and thr is not None and stat > thr


def test_class_mix_drift_and_unknown_labels() -> None:
    world = synth.EmbeddingWorld()
    prof = synth.profile(world)
    mon = Monitor(settings(drift_window_events=50), profile=prof)
    rng = np.random.default_rng(5)
    out = []
    for k in range(50):  # a label the reference never saw
        ev = synth.prediction(
            f"u{k}", "fox" if k % 2 else "cat", T0 + k, confidence=float(prof.confidence[k])
        )
        out += mon.on_prediction(ev, now=T0 + k)
    psi = [e for e in out if e.metric == "class_mix_psi"]
    assert len(psi) == 1 and psi[0].kind == "alert" and psi[0].value > 0.2
    del rng


def test_other_model_versions_get_label_and_confidence_drift_but_no_embedding_test() -> None:
    """The profile was made with v1: v2's class mix and confidences are still tested against it,
    its embeddings (another feature space) never are."""
    world = synth.EmbeddingWorld()
    prof = synth.profile(world, version="v1")
    mon = Monitor(settings(drift_window_events=50), profile=prof)
    emb, cls = world.sample(100, np.random.default_rng(3))
    out = []
    for version in ("v1", "v2"):
        for k in range(50):
            i = k if version == "v1" else 50 + k
            ev = synth.prediction(
                f"{version}-{k}",
                ["cat", "dog"][cls[i]],
                T0 + k,
                version=version,
                confidence=float(prof.confidence[i]),
                embedding=emb[i],
            )
            out += mon.on_prediction(ev, now=T0 + k)
    tested = {(e.model_version, e.metric) for e in out}
    assert tested == {
        ("v1", "class_mix_psi"),
        ("v1", "confidence_ks"),
        ("v1", "embedding_mmd"),
        ("v2", "class_mix_psi"),
        ("v2", "confidence_ks"),
    }


def _sample(mon: Monitor, name: str, **labels: str) -> float | None:
    return mon.metrics.registry.get_sample_value(name, labels)


def test_champion_and_challenger_join_each_label_in_any_order() -> None:
    """Each label pairs with the id's champion and its challenger prediction, whichever of the
    three arrives first; the champion's figures are those of a monitor without a challenger."""
    with_challenger = Monitor(settings(), profile=None)
    alone = Monitor(settings(), profile=None)
    for i in range(20):
        t = T0 + i * 0.1
        champion = synth.prediction(f"id{i}", "cat", t, confidence=0.9)  # always right
        challenger = synth.prediction(f"id{i}", "cat" if i % 4 else "dog", t, version="v2", confidence=0.8)
        label = synth.feedback(f"id{i}", "cat", t + 0.05)
        order = [
            ("f", "c", "s"),  # feedback before both predictions
            ("c", "f", "s"),  # between them
            ("s", "c", "f"),  # after both
            ("c", "s", "f"),
        ][i % 4]
        for step in order:
            if step == "f":
                with_challenger.on_feedback(label, now=t)
            elif step == "c":
                with_challenger.on_prediction(champion, now=t)
            else:
                with_challenger.on_shadow_prediction(challenger, now=t)
        alone.on_prediction(champion, now=t)
        alone.on_feedback(label, now=t)
    with_challenger.tick(T0 + 20)
    alone.tick(T0 + 20)
    a, b = with_challenger.summary(), alone.summary()
    assert a["versions"] == b["versions"] and list(a["versions"]) == ["v1"]
    models = {(m["role"], m["version"]): m for m in a["models"]}
    assert list(models) == [("champion", "v1"), ("challenger", "v2")]
    champ, chall = models[("champion", "v1")], models[("challenger", "v2")]
    assert (champ["labelled"], champ["cumulative_accuracy"], champ["window_accuracy"]) == (20, 1.0, 1.0)
    assert (chall["labelled"], chall["cumulative_accuracy"], chall["window_accuracy"]) == (20, 0.75, 0.75)
    assert chall["window_labels"] == 20 and chall["predictions"] == 20
    # The champion's model_version metrics never see the challenger.
    assert _sample(with_challenger, "pawstream_monitor_labelled_total", model_version="v2") is None
    assert _sample(with_challenger, "pawstream_monitor_labelled_total", model_version="v1") == 20
    acc = "pawstream_monitor_model_cumulative_accuracy"
    assert _sample(with_challenger, acc, role="challenger", version="v2") == 0.75
    assert _sample(with_challenger, acc, role="champion", version="v1") == 1.0
    assert (
        _sample(with_challenger, "pawstream_monitor_model_window_labels", role="challenger", version="v2")
        == 20
    )


def test_duplicates_of_either_role_are_counted_once_and_never_twice() -> None:
    mon = Monitor(settings(), profile=None)
    champion = synth.prediction("a", "cat", T0, confidence=0.9)
    challenger = synth.prediction("a", "dog", T0, version="v2", confidence=0.7)
    label = synth.feedback("a", "cat", T0 + 1)
    mon.on_prediction(champion, now=T0)
    mon.on_shadow_prediction(challenger, now=T0)
    mon.on_feedback(label, now=T0 + 1)
    # Redelivered: each of the three once more, and a second, different label (first one wins).
    mon.on_shadow_prediction(challenger, now=T0 + 2)
    mon.on_prediction(champion, now=T0 + 2)
    mon.on_feedback(label, now=T0 + 2)
    mon.on_feedback(synth.feedback("a", "dog", T0 + 3), now=T0 + 3)
    dup = "pawstream_monitor_duplicates_total"
    assert _sample(mon, dup, kind="prediction") == 1
    assert _sample(mon, dup, kind="shadow_prediction") == 1
    assert _sample(mon, dup, kind="feedback") == 2  # as before shadow scoring
    assert _sample(mon, dup, kind="shadow_feedback") == 2
    models = {m["role"]: m for m in mon.summary()["models"]}
    assert (models["champion"]["labelled"], models["champion"]["cumulative_accuracy"]) == (1, 1.0)
    assert (models["challenger"]["labelled"], models["challenger"]["cumulative_accuracy"]) == (1, 0.0)
    assert models["challenger"]["predictions"] == 1


def test_ece_windowed_and_cumulative_on_known_numbers() -> None:
    """Window 0: 10 pairs at confidence 0.95 with 8 right, 10 at 0.65 with 7 right: ECE =
    (|8 - 9.5| + |7 - 6.5|) / 20 = 0.1. Window 1: 10 at 0.95, all right: ECE = 0.05.
    Cumulative: (|18 - 19| + |7 - 6.5|) / 30 = 0.05."""
    mon = Monitor(settings(), profile=None)
    pairs = [(0.95, i < 8) for i in range(10)] + [(0.65, i < 7) for i in range(10)]
    pairs += [(0.95, True)] * 10
    for i, (confidence, right) in enumerate(pairs):
        t = T0 + (i * 0.5 if i < 20 else 10 + (i - 20) * 0.5)
        for role in ("champion", "challenger"):
            ev = synth.prediction(f"e{i}", "cat", t, confidence=confidence, version="v7")
            (mon.on_prediction if role == "champion" else mon.on_shadow_prediction)(ev, now=t)
        mon.on_feedback(synth.feedback(f"e{i}", "cat" if right else "dog", t), now=t)
        if i == 19:
            mon.tick(T0 + 10 + 2.5)  # window 0 closes (grace 2 s)
            for role in ("champion", "challenger"):
                assert _sample(mon, "pawstream_monitor_model_window_ece", role=role, version="v7") == (
                    pytest.approx(0.1)
                )
    mon.tick(T0 + 30)
    for role in ("champion", "challenger"):
        labels = {"role": role, "version": "v7"}
        assert _sample(mon, "pawstream_monitor_model_window_ece", **labels) == pytest.approx(0.05)
        assert _sample(mon, "pawstream_monitor_model_cumulative_ece", **labels) == pytest.approx(0.05)
    # The same figure as training's ECE (training/calibration.py) with the same bins.
    conf = np.array([c for c, _ in pairs])
    correct = np.array([r for _, r in pairs])
    probs = np.stack([conf, 1 - conf], axis=1)  # class 0 predicted, at that confidence
    assert ece(probs, np.where(correct, 0, 1), bins=10) == pytest.approx(0.05)


def test_ece_bin_edges_match_training_and_pairs_without_confidence_are_left_out() -> None:
    cal = Calibration(10)
    assert [cal.bin_of(c) for c in (0.0, 0.05, 0.1, 0.1000001, 0.5, 0.95, 1.0)] == [0, 0, 0, 1, 4, 9, 9]
    assert math.isnan(cal.ece)
    cal.add(float("nan"), True)
    assert cal.total == 0
    # A join entry written before confidences were kept (5 items) still joins, without ECE.
    mon = Monitor(settings(), profile=None)
    mon.join.store["old"] = ["p", T0, "cat", "v1", T0 - 1]
    mon.on_feedback(synth.feedback("old", "cat", T0 + 1), now=T0 + 1)
    (champion,) = mon.summary()["models"]
    assert (champion["labelled"], champion["cumulative_accuracy"], champion["cumulative_ece"]) == (
        1,
        1.0,
        None,
    )


def test_the_side_by_side_view_keeps_at_most_model_series_max_pairs() -> None:
    mon = Monitor(settings(model_series_max=2), profile=None)
    mon.on_prediction(synth.prediction("a", "cat", T0, version="v1"), now=T0)
    mon.on_shadow_prediction(synth.prediction("a", "cat", T0, version="v2"), now=T0)
    mon.on_feedback(synth.feedback("a", "cat", T0), now=T0)
    mon.on_shadow_prediction(synth.prediction("b", "cat", T0 + 1, version="v2"), now=T0 + 1)
    mon.on_prediction(synth.prediction("b", "cat", T0 + 1, version="v3"), now=T0 + 1)  # hot reload
    preds = "pawstream_monitor_model_predictions"
    assert _sample(mon, preds, role="champion", version="v1") is None  # least recently active
    assert _sample(mon, "pawstream_monitor_model_cumulative_accuracy", role="champion", version="v1") is None
    assert _sample(mon, preds, role="challenger", version="v2") == 2
    assert _sample(mon, preds, role="champion", version="v3") == 1
    # No label yet for v3: no accuracy series (it would read 0), not a wrong figure.
    assert _sample(mon, "pawstream_monitor_model_cumulative_accuracy", role="champion", version="v3") is None
    assert _sample(mon, "pawstream_monitor_model_series_dropped_total") == 1
    assert [(m["role"], m["version"]) for m in mon.summary()["models"]] == [
        ("champion", "v3"),
        ("challenger", "v2"),
    ]
    # The champion's own per-version figures are not capped: v1 is still there.
    assert _sample(mon, "pawstream_monitor_labelled_total", model_version="v1") == 1


def test_the_challenger_is_drift_tested_apart_and_emits_no_events() -> None:
    """Challenger v2 beside champion v1 (the profile's version), on the same images: each gets
    its own drift windows; v2 has no embedding test, and its results are gauges, not events."""
    world = synth.EmbeddingWorld()
    prof = synth.profile(world, version="v1")
    mon = Monitor(settings(drift_window_events=50), profile=prof)
    emb, cls = world.sample(50, np.random.default_rng(4))
    events = []
    for k in range(50):
        label, conf = ["cat", "dog"][cls[k]], float(prof.confidence[k])
        ev = synth.prediction(f"d{k}", label, T0 + k, confidence=conf, embedding=emb[k])
        events += mon.on_prediction(ev, now=T0 + k)
        shadow = synth.prediction(f"d{k}", "fox", T0 + k, version="v2", confidence=0.55, embedding=emb[k])
        assert mon.on_shadow_prediction(shadow, now=T0 + k) == []
    assert {(e.model_version, e.metric, e.kind) for e in events} == {
        ("v1", "class_mix_psi", "window"),
        ("v1", "confidence_ks", "window"),
        ("v1", "embedding_mmd", "window"),
    }
    detected = "pawstream_monitor_model_drift_detected"
    assert _sample(mon, detected, role="challenger", version="v2", metric="class_mix_psi") == 1
    assert _sample(mon, detected, role="challenger", version="v2", metric="confidence_ks") == 1
    assert _sample(mon, detected, role="challenger", version="v2", metric="embedding_mmd") is None
    assert _sample(mon, detected, role="champion", version="v1", metric="embedding_mmd") == 0
    assert mon.summary()["status"] == "ok"  # the challenger's drift alerts nobody
    by_role = {m["role"]: m for m in mon.summary()["models"]}
    assert set(by_role["challenger"]["drift"]) == {"class_mix_psi", "confidence_ks"}
    assert by_role["challenger"]["drift"]["class_mix_psi"]["drift"] is True


def test_paired_figures_count_the_ids_both_roles_predicted_whatever_the_order() -> None:
    mon = Monitor(settings(), profile=None)
    for i in range(20):
        t = T0 + i * 0.1
        champion = synth.prediction(f"id{i}", "cat", t, confidence=0.9)  # always right
        challenger = synth.prediction(f"id{i}", "cat" if i % 4 else "dog", t, version="v2", confidence=0.8)
        label = synth.feedback(f"id{i}", "cat", t + 0.05)
        for step in ["fcs", "cfs", "scf", "csf"][i % 4]:
            if step == "f":
                mon.on_feedback(label, now=t)
            elif step == "c":
                mon.on_prediction(champion, now=t)
            else:
                mon.on_shadow_prediction(challenger, now=t)
    # Not shadowed (over the budget): in the champion's figures, not in the paired ones.
    for i in range(20, 30):
        mon.on_prediction(synth.prediction(f"id{i}", "cat", T0 + 3), now=T0 + 3)
        mon.on_feedback(synth.feedback(f"id{i}", "cat", T0 + 3), now=T0 + 3)
    pair = {"champion_version": "v1", "challenger_version": "v2"}
    assert _sample(mon, "pawstream_monitor_paired_labels_total", **pair) == 20
    assert _sample(mon, "pawstream_monitor_paired_correct_total", **pair, role="champion") == 20
    assert _sample(mon, "pawstream_monitor_paired_correct_total", **pair, role="challenger") == 15
    assert len(mon.paired) == 10  # the unshadowed ids' champion halves, bounded by join_max_entries
    summary = summary_from_metrics(generate_latest(mon.metrics.registry).decode())
    assert summary["pairs"] == [{**pair, "labelled": 20, "champion_correct": 20, "challenger_correct": 15}]
