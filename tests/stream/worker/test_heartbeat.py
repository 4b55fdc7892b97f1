"""The model heartbeat: built from a loaded predictor, read back unchanged."""

from __future__ import annotations

from pathlib import Path

from pawstream.schemas import ModelHeartbeat, parse_versioned, utcnow
from pawstream.settings import Settings
from pawstream.vision.predictor import Predictor
from stream.worker.heartbeat import build_heartbeat, served_registry_uri


def test_heartbeat_round_trips_and_carries_the_artifacts_identity(tiny_artifact: Path) -> None:
    settings = Settings(log_json=False)
    predictor = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7, warmup=False)
    hb = build_heartbeat(settings, predictor, "host:1", utcnow())
    assert (hb.name, hb.version, hb.arch, hb.runtime) == ("pawstream-test", "test-1", "resnet18", "fp32")
    assert hb.labels == ["cat", "dog"] and (hb.input.size, hb.input.resize) == (64, 72)
    assert hb.registry_uri is None and hb.alias is None and hb.challenger is None
    assert hb.record_key() == f"{settings.worker.app_id}/host:1".encode()
    back = parse_versioned(ModelHeartbeat, hb.to_bytes())
    assert back == hb
    assert b'"type":"model_heartbeat"' in hb.to_bytes()


def test_a_copy_in_the_registry_cache_counts_as_registry_served(tmp_path: Path) -> None:
    settings = Settings(log_json=False)
    model = settings.model.model_copy(
        update={
            "cache_dir": tmp_path,
            "artifact_path": tmp_path / "m" / "2-abc",
            "registry_uri": "models:/m@champion",
        }
    )
    assert served_registry_uri(settings.model_copy(update={"model": model})) == "models:/m@champion"
