"""An image that kills the worker process twice is dead-lettered as `poison`, not retried forever.

The poison event here is an http reference to a local server that never answers; the test plays
the OOM killer: each time the server sees the request arrive, it SIGKILLs the worker and starts a
new one. Nothing in the product knows about the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import Settings
from tests.support.hanging_server import HangingServer, publish, requester, small_images, with_hanging_refs
from tests.support.kafka import TopicReader
from tests.support.waiting import eventually_async
from tests.support.workers import WorkerProcess, running_worker

pytestmark = pytest.mark.integration


async def test_an_image_that_kills_the_worker_twice_is_dead_lettered_as_poison(
    settings: Settings, hanging_http: HangingServer, tmp_path: Path
) -> None:
    # The images spread over the fixture's 4 input partitions: after the first death each of
    # them is handled one image at a time, and a partition finished before the poison's must not
    # be taken for the one in flight at the second death.
    settings = with_hanging_refs(settings, micro_batch_max=16, max_wait_s=0.2)
    good = small_images("good", 11)
    poison = ImageEvent(id="poison-0", ref=hanging_http.url)
    await publish(settings, [*good[:5], poison, *good[5:]])

    for death in (1, 2):
        victim = WorkerProcess(settings, tmp_path / f"death{death}.log", f"death{death}").start()
        try:
            await hanging_http.wait_for_arrival(victim, 120)
        finally:
            victim.kill()  # SIGKILL while the poison event is in flight, as an OOM kill would
        assert hanging_http.arrivals == death

    async with (
        TopicReader(settings, settings.topics.predictions) as preds,
        TopicReader(settings, settings.topics.deadletters) as dead,
    ):
        survivor = WorkerProcess(settings, tmp_path / "survivor.log", "survivor").start()
        try:
            await dead.wait_until(lambda r: poison.id in {x.get("id") for x in r}, 120, "the poison letter")
            await preds.wait_until(lambda r: {g.id for g in good} <= {x["id"] for x in r}, 120, "the rest")
            assert survivor.alive(), survivor.log_tail()
        finally:
            survivor.stop()

    letters = [x for x in dead.records if x.get("id") == poison.id]
    assert [(x["reason"], x["stage"], x["worker"]) for x in letters] == [
        (DeadLetterReason.POISON.value, "recovery", "survivor")
    ]
    assert letters[0]["ref"] == hanging_http.url
    assert hanging_http.arrivals == 2  # the third worker never fetched it again
    assert poison.id not in {x["id"] for x in preds.records}
    assert {x.get("id") for x in dead.records} == {poison.id}, dead.records  # no neighbour dead-lettered


async def test_a_partition_handed_over_after_a_death_is_recovered_by_its_new_owner(
    settings: Settings, hanging_http: HangingServer, tmp_path: Path
) -> None:
    """Two workers share the group: the one fetching the poison image dies, the other takes over
    its partitions, finds the unfinished batch in the markers, and the image ends as poison."""
    settings = with_hanging_refs(settings, micro_batch_max=16, max_wait_s=0.2)
    good = small_images("good", 11)
    poison = ImageEvent(id="poison-0", ref=hanging_http.url)
    workers = [WorkerProcess(settings, tmp_path / f"{n}.log", n).start() for n in ("a", "b")]
    try:
        await until_ready(workers, 120)  # both in the group: the partitions are split between them
        await publish(settings, [*good[:5], poison, *good[5:]])

        await hanging_http.wait_for_arrival(workers[0], 120)
        first = requester(workers, hanging_http.peer_ports[-1])
        first.kill()  # its partitions move to the other worker
        heir = next(w for w in workers if w is not first)
        await hanging_http.wait_for_arrival(heir, 120)
        assert requester([heir], hanging_http.peer_ports[-1]) is heir
        heir.kill()  # the second death, in the new owner, with the image alone in flight
    finally:
        for w in workers:
            w.kill()
    assert "found an unfinished batch" in heir.log_path.read_text()

    async with TopicReader(settings, settings.topics.deadletters) as dead:
        with running_worker(settings, tmp_path, "survivor"):
            await dead.wait_until(lambda r: poison.id in {x.get("id") for x in r}, 120, "the poison letter")
    letter = next(x for x in dead.records if x.get("id") == poison.id)
    assert (letter["reason"], letter["worker"]) == (DeadLetterReason.POISON.value, "survivor")
    assert hanging_http.arrivals == 2


async def until_ready(workers: list[WorkerProcess], timeout_s: float) -> None:
    """Until every worker has logged Faust's "Worker ready" (it has its first assignment)."""

    def ready() -> bool:
        if all("Worker ready" in w.log_path.read_text(errors="replace") for w in workers):
            return True
        for w in workers:
            assert w.alive(), w.log_tail()
        return False

    await eventually_async(ready, timeout_s, interval=0.2, message="the workers to become ready")
