"""A real worker's peak memory through large-but-legal and extreme-aspect images.

Before the decode bounds, a 69-byte 1000x1 PNG raised a worker's RSS by ~390 MB (the resize
scaled its short side to 256 and materialised a 256000-pixel long side) and a micro-batch of 32
6000x6000 PNGs held ~3.5 GB of decoded pixels at once. This runs a real `pawstream worker` on the
224-px artifact through a whole micro-batch of such images, with default limits (40 Mpx, aspect
20:1, 64 Mpx per batch slice), and samples the process's resident set with psutil the whole time.
"""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaProducer
from PIL import Image

from pawstream.kafka import producer_kwargs
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import Settings
from tests.support.images import jpeg_bytes
from tests.support.kafka import TopicReader
from tests.support.settings import with_artifact
from tests.support.waiting import Deadline
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

RSS_LIMIT_MB = 700
# The sampler kills a worker that goes this far: a regression must fail the test, not the machine.
RSS_ABORT_MB = 4096


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    """A flat-colour PNG: a few KB on the wire whatever its decoded size."""
    colours: dict[str, int | tuple[int, ...]] = {
        "L": 90,
        "P": 3,
        "RGB": (200, 120, 40),
        "RGBA": (10, 200, 90, 128),
    }
    colour = colours[mode]
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def smooth_jpeg(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.radial_gradient("L").resize(size).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    reason: DeadLetterReason | None  # None: predicted


def corpus() -> list[Case]:
    """32 images for one micro-batch: large-but-legal in every PNG mode, and extreme shapes."""
    modes = ["RGB", "RGBA", "P", "L"]
    cases = [Case(f"big-{i}-{modes[i % 4]}", png((6000, 6000), modes[i % 4]), None) for i in range(20)]
    cases += [
        Case("big-6300x6300", png((6300, 6300)), None),  # just under the 40 Mpx limit
        Case("legal-20to1", png((8000, 400)), None),  # at the aspect limit: cropped, not refused
        Case("legal-1to20-rgba", png((300, 6000), "RGBA"), None),
        Case("legal-12to1", png((19200, 1600)), None),  # 30.7 Mpx, 12:1
        Case("wide-1000x1", png((1000, 1)), DeadLetterReason.TOO_LARGE),
        Case("wide-2000x1", png((2000, 1)), DeadLetterReason.TOO_LARGE),
        Case("tall-1x5000", png((1, 5000)), DeadLetterReason.TOO_LARGE),
        Case("wide-30000x1000", png((30000, 1000)), DeadLetterReason.TOO_LARGE),
        Case("tall-500x21000", png((500, 21000), "L"), DeadLetterReason.TOO_LARGE),
        Case("bomb-7000x7000", png((7000, 7000)), DeadLetterReason.TOO_LARGE),  # over 40 Mpx
        Case("photo-a", jpeg_bytes(1, (640, 480)), None),
        Case("photo-b", smooth_jpeg((4000, 3000)), None),  # decoded at 1/8 scale (draft mode)
    ]
    assert len(cases) == 32
    return cases


class RssSampler:
    """Samples a process's RSS every few ms in a thread; kills it past ``abort_mb``."""

    def __init__(self, pid: int, abort_mb: float, interval_s: float = 0.005) -> None:
        self.proc = psutil.Process(pid)
        self.abort = int(abort_mb * 2**20)
        self.interval_s = interval_s
        self.peak = 0
        self.aborted = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            if rss > self.abort:
                self.aborted = True
                self.proc.kill()
                return
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        # The kernel's own high-water mark catches a spike between two samples (Linux).
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak = max(self.peak, int(line.split()[1]) * 1024)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


async def _send_one_partition(settings: Settings, items: list[tuple[str, bytes]]) -> None:
    """All on partition 0, sent together: they reach the worker as one micro-batch."""
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topics.images, ImageEvent(id=i, data=d).to_bytes(), partition=0)
            for i, d in items
        ]
        await producer.flush()
        for f in futures:
            await f
    finally:
        await producer.stop()


_EXPORT = """
import sys
from pathlib import Path
from pawstream.vision.predictor import Predictor
Predictor.from_artifact(Path(sys.argv[1]), threads=2, max_pixels=10**7, runtime=sys.argv[2],
                        cache_dir=Path(sys.argv[3]), model_batch_max=4)
"""


@pytest.mark.parametrize("runtime", ["fp32", "openvino-bf16"])
async def test_worker_peak_rss_stays_bounded_through_large_and_extreme_images(
    settings: Settings, full_artifact: Path, tmp_path: Path, runtime: str
) -> None:
    settings = with_artifact(
        settings,
        full_artifact,
        micro_batch_max=32,
        runtime=runtime,
        runtime_cache_dir=tmp_path / "runtime",
        # The corpus is ~2.5 MB on the wire: one fetch and one take() window hold all of it.
        fetch_partition_max_bytes=16 * 2**20,
        max_wait_s=1.0,
    )
    if runtime != "fp32":
        # As in production, the worker starts from the runtime's cached export: exporting loads
        # the torch model beside the compiled one, a one-off start-up cost, not the batch's.
        cache = str(settings.worker.runtime_cache_dir)
        export = [sys.executable, "-c", _EXPORT, str(full_artifact), runtime, cache]
        await asyncio.to_thread(subprocess.run, export, check=True, timeout=600)
    cases = corpus()
    with running_worker(settings, tmp_path) as worker:
        with RssSampler(worker.pid, RSS_ABORT_MB) as sampler:
            async with (
                TopicReader(settings, settings.topics.predictions) as preds,
                TopicReader(settings, settings.topics.deadletters) as dead,
            ):
                # Warm-up: the model is loaded (and exported, for OpenVINO) and the group joined.
                await _send_one_partition(settings, [("warmup", jpeg_bytes(0, (320, 240)))])
                await preds.wait_until(lambda r: len(r) >= 1, 240, "the warm-up prediction")
                warm_mb = sampler.peak_mb
                await _send_one_partition(settings, [(c.id, c.data) for c in cases])

                def settled(_: object) -> bool:
                    return len(preds.ids() | dead.ids()) >= len(cases) + 1 or not worker.alive()

                # A loop rather than `eventually_async`: each turn reads both topics (each read blocks).
                deadline = Deadline(300)
                while not settled(None):
                    deadline.check(lambda: f"every case settled; worker log:\n{worker.log_tail()}")
                    await preds.poll(0.1)
                    await dead.poll(0.1)
        peak_mb = sampler.peak_mb
        logger.info(
            "worker RSS (%s): %.0f MB after warm-up, %.0f MB peak",
            runtime,
            warm_mb,
            peak_mb,
            extra={"runtime": runtime, "warm_mb": warm_mb, "peak_mb": peak_mb},
        )
        assert not sampler.aborted, f"worker RSS passed {RSS_ABORT_MB} MB and was killed"
        assert worker.alive(), f"the worker died:\n{worker.log_tail()}"

    predicted = {r["id"]: r for r in preds.records}
    reasons = {r["id"]: r["reason"] for r in dead.records}
    for c in cases:
        if c.reason is None:
            assert c.id in predicted, (c.id, reasons.get(c.id))
        else:
            assert reasons.get(c.id) == c.reason.value, (c.id, reasons.get(c.id))
    assert "aspect ratio" in next(r["message"] for r in dead.records if r["id"] == "wide-1000x1")
    # They really were one micro-batch (each prediction names its batch's size).
    assert max(predicted[c.id]["micro_batch_images"] for c in cases if c.reason is None) >= 20
    assert peak_mb < RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB (after warm-up {warm_mb:.0f} MB)"
