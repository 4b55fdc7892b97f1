"""Small parts of the demo and the stack: port choice, the held-out sample, the state folder lock."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.checks import PortInUse, PortPicker
from stack.demo.sample import choose_sample, held_out
from stack.plan import StackBusy, state_dir
from tests.support.images import jpeg_bytes


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_busy_port_is_replaced_and_reported(busy_port: int) -> None:
    picker = PortPicker(fallback=True)
    chosen = picker.pick("API", "api.port", "127.0.0.1", busy_port)
    assert chosen != busy_port
    assert picker.moved == [f"API: port {busy_port} is in use, using {chosen}"]
    # A port the stack already holds moves quietly, also without fallback.
    strict = PortPicker(fallback=False)
    first = strict.pick("monitor metrics", "monitoring.metrics_port", "0.0.0.0", chosen)
    assert strict.pick("worker-2 metrics", "worker.metrics_port", "0.0.0.0", first) != first
    assert strict.moved == []


def test_a_busy_port_fails_clearly_without_fallback(busy_port: int) -> None:
    with pytest.raises(PortInUse, match=f"port {busy_port} for the API is in use.*PAWSTREAM_API__PORT"):
        PortPicker(fallback=False).pick("API", "api.port", "127.0.0.1", busy_port)


def test_the_sample_comes_from_the_held_out_split_of_the_served_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "photos"
    for label in ("cat", "dog"):
        (data / label).mkdir(parents=True)
        for i in range(6):
            (data / label / f"{i}.jpg").write_bytes(jpeg_bytes(i))
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "summary.json").write_text(json.dumps({"source": "photos", "data_hash": "sha256:abc"}))
    (prepared / "test.csv").write_text("relpath,label\ncat/1.jpg,cat\ndog/4.jpg,dog\n")
    photos, note = choose_sample(data, 10, ["cat", "dog"], data_hash="sha256:abc")
    assert sorted(p.path.relative_to(data).as_posix() for p in photos) == ["cat/1.jpg", "dog/4.jpg"]
    assert "held-out test photos" in note
    # A model trained on other data: any photo of the folder.
    assert held_out(data, "sha256:other") is None
    photos, note = choose_sample(data, 10, ["cat", "dog"], data_hash="sha256:other")
    assert len(photos) == 10
    assert "held-out" not in note


def test_two_stacks_cannot_share_a_state_folder(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text("from the last run")
    with state_dir(tmp_path):
        assert not (tmp_path / "old.log").exists()  # emptied at start
        with pytest.raises(StackBusy, match="another `pawstream up` or demo is using"), state_dir(tmp_path):
            pass
