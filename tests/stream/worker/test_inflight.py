"""What an in-flight marker left by a dead worker means for the next owner of its partition."""

from __future__ import annotations

from stream.worker.inflight import Marker, Watch, partition_key, watch_from


def test_a_finished_or_missing_batch_needs_no_watch() -> None:
    assert watch_from(None) is None
    assert watch_from(Marker(state="done", first=0, last=31, worker="w")) is None


def test_an_unfinished_batch_is_watched_with_no_poison_yet() -> None:
    assert watch_from(Marker(state="batch", first=10, last=41, worker="w")) == Watch(10, 41, set())


def test_the_image_in_flight_at_the_second_death_is_poison() -> None:
    one = Marker(state="one", first=10, last=41, current=17, poison=[12], worker="w")
    assert watch_from(one) == Watch(10, 41, {12, 17})
    # Between two images (current unset) nothing new is suspected.
    between = Marker(state="one", first=10, last=41, poison=[12], worker="w")
    assert watch_from(between) == Watch(10, 41, {12})


def test_markers_round_trip_and_are_keyed_by_input_partition() -> None:
    m = Marker(state="one", first=1, last=2, current=2, poison=[1], worker="w")
    assert Marker.model_validate_json(m.model_dump_json()) == m
    assert partition_key("pawstream.images", 3) == "pawstream.images:3"
