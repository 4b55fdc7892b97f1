"""Two workers in one consumer group split the images topic's partitions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pawstream.settings import Settings
from producers.publish import publish_images
from tests.support.images import jpeg_files
from tests.support.kafka import TopicReader
from tests.support.settings import with_artifact
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration


async def test_two_workers_share_the_partitions(
    settings: Settings, tiny_artifact: Path, tmp_path: Path
) -> None:
    settings = with_artifact(settings, tiny_artifact, micro_batch_max=8)
    photos = [str(p) for p in jpeg_files(tmp_path / "imgs", 400, size=(96, 96))]
    async with TopicReader(settings, settings.topics.predictions) as preds:
        with running_worker(settings, tmp_path, "alpha"), running_worker(settings, tmp_path, "beta"):
            # Both must be in the group before the burst, or the first one takes everything.
            warm = await publish_images(settings, photos[:40])
            await preds.wait_until(
                lambda r: (
                    {x["worker"] for x in r} == {"alpha", "beta"}
                    and bool(warm.published)
                    and set(warm.published) <= {x["id"] for x in r}
                ),
                120,
                "both workers predicting",
            )
            report = await publish_images(settings, photos[40:])
            wanted = set(report.published) | set(warm.published)
            await preds.wait_until(lambda r: wanted <= {x["id"] for x in r}, 120, "all 400 predicted")
    by_worker = Counter(r["worker"] for r in preds.records)
    assert set(by_worker) == {"alpha", "beta"}
    assert min(by_worker.values()) >= 50, by_worker  # a real split, not a token share
