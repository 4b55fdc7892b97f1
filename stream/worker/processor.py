"""One micro-batch of image records -> prediction events and dead letters.

Kept free of Faust so it can be tested and benchmarked on its own. Every record in a batch ends
as exactly one output: a PredictionEvent, or a DeadLetterEvent with a reason code. A bad record
never costs its neighbours their predictions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from pawstream.references import ReferenceFetcher
from pawstream.schemas import (
    DeadLetterEvent,
    DeadLetterReason,
    DeadLetterStage,
    EventError,
    ImageEvent,
    PredictionEvent,
    parse_image_event,
    sha256_hex,
    utcnow,
)
from pawstream.settings import Settings
from pawstream.vision.predictor import Predictor
from stream.worker.deadletter import Source, build_deadletter
from stream.worker.pixel_budget import pixel_slices
from stream.worker.serving import ServingState
from stream.worker.shadow_budget import ShadowBudget
from stream.worker.worker_metrics import WorkerMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record, independent of the client library."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float | None  # seconds since the epoch


@dataclass
class BatchResult:
    predictions: list[PredictionEvent] = field(default_factory=list)
    deadletters: list[DeadLetterEvent] = field(default_factory=list)
    # The challenger's predictions of the same batch, for topics.shadow_predictions.
    shadow: list[PredictionEvent] = field(default_factory=list)


@dataclass
class _Item:
    record: Record
    event: ImageEvent | None = None
    data: bytes | None = None
    pixels: np.ndarray | None = None  # decoded, before the model thread resizes and normalises
    cost: int = 0  # pixels its decode materialises (from the header): its share of the slice budget
    error: EventError | None = None
    stage: DeadLetterStage = "parse"
    shadow: tuple[np.ndarray, np.ndarray] | None = None  # the challenger's (probs, embedding)


def _unexpected(exc: Exception) -> EventError:
    """An error no check anticipated, on one item: reason ``internal``, named by its type."""
    return EventError(DeadLetterReason.INTERNAL, f"{type(exc).__name__}: {exc}"[:500])


def _ts(seconds: float | None, fallback: datetime) -> datetime:
    return datetime.fromtimestamp(seconds, UTC) if seconds else fallback


class BatchProcessor:
    def __init__(
        self,
        settings: Settings,
        predictor: Predictor | ServingState,
        fetcher: ReferenceFetcher,
        metrics: WorkerMetrics,
        worker_name: str,
        decode_pool: Executor,
        inference_pool: Executor,
    ) -> None:
        self.settings = settings
        # The models serving now; a reload offers new ones, adopted between batches (serving.py).
        self.serving = predictor if isinstance(predictor, ServingState) else ServingState(predictor)
        self.shadow_budget = ShadowBudget(settings.worker.shadow_budget)
        self.fetcher = fetcher
        self.metrics = metrics
        self.worker_name = worker_name
        self.decode_pool = decode_pool
        self.inference_pool = inference_pool

    @property
    def predictor(self) -> Predictor:
        """The champion; it changes only between batches (ServingState adopts offers then)."""
        return self.serving.champion.predictor

    @property
    def challenger(self) -> Predictor | None:
        """The challenger to shadow with; None when there is none or it is the champion's model.

        After a promote moves @champion to the challenger's version, the worker serves that
        version in both roles until @challenger moves: shadowing would score every batch twice
        with the same weights, spend the budget and report a figure that is the champion's own.
        """
        served = self.serving.challenger
        if served is None:
            return None
        challenger, champion = served.predictor.model_info, self.predictor.model_info
        if (challenger.version, challenger.run_id) == (champion.version, champion.run_id):
            return None
        return served.predictor

    async def process(self, records: list[Record]) -> BatchResult:
        self.serving.begin_batch()  # a model offered by a reload starts serving here, never mid-batch
        try:
            started = utcnow()
            self.metrics.events_in.inc(len(records))
            items = [_Item(r) for r in records]
            ok, outputs = await self._prepare_and_infer(items)
            return self._build(items, ok, outputs, started)
        finally:
            self.serving.end_batch()

    async def _prepare_and_infer(
        self, items: list[_Item]
    ) -> tuple[list[_Item], list[tuple[np.ndarray, np.ndarray] | EventError]]:
        """Parse and fetch every item, then decode and classify them one pixel-budget slice at a time.

        A slice's images are all decoded before the model runs on them (itself in slices of
        worker.model_batch_max, see ChunkedRunner). Feeding the model while later images still decode
        was measured: 55 vs 60 img/s fp32 in-process, as the decode threads then compete with
        torch's OpenMP threads for the two cores. Resizing happens in the model's thread. Past
        worker.decode_slice_pixels the rest of the batch waits: its pixels are decoded only after
        the slice before has been classified and released (stream/worker/pixel_budget.py).
        """
        start = time.perf_counter()
        await asyncio.gather(*(self._prepare(it) for it in items))
        fetched = [it for it in items if it.error is None and it.data is not None]
        ok: list[_Item] = []
        outputs: list[tuple[np.ndarray, np.ndarray] | EventError] = []
        infer_s = 0.0
        # Shadowed whole or not at all: decided before the batch, from the budget (shadow_budget.py).
        shadow = self.challenger is not None and self.shadow_budget.allow()
        shadow_s = 0.0
        for part in pixel_slices(fetched, lambda it: it.cost, self.settings.worker.decode_slice_pixels):
            await asyncio.gather(*(self._decode(it) for it in part))
            t0 = time.perf_counter()
            decoded = [it for it in part if it.error is None and it.pixels is not None]
            if decoded:
                outputs += await self._infer(decoded)
                infer_s += time.perf_counter() - t0
                if shadow:
                    # Same decoded pixels, same slice: memory stays within the slice's budget.
                    t1 = time.perf_counter()
                    shadow = await self._shadow(decoded)
                    shadow_s += time.perf_counter() - t1
                t0 = time.perf_counter()
            for it in decoded:
                it.pixels = None  # released before the next slice decodes
            for it in part:
                it.data = None  # and the fetched bytes (up to refs.http_max_bytes each) with them
            ok += decoded
            infer_s += time.perf_counter() - t0
        # Per micro-batch, as before slicing: the dashboards read them that way.
        self.metrics.decode_seconds.observe(time.perf_counter() - start - infer_s - shadow_s)
        if ok:
            self.metrics.micro_batch_images.observe(len(ok))
            self.metrics.inference_seconds.observe(infer_s)
            if self.challenger is not None:
                self.shadow_budget.record(infer_s, shadow_s)
                outcome = "skipped" if not shadow_s else "shadowed" if shadow else "failed"
                self.metrics.shadow_batches.labels(outcome=outcome).inc()
                if shadow_s:
                    self.metrics.shadow_inference_seconds.observe(shadow_s)
        if not shadow:  # skipped, or failed part-way: no half-shadowed batch
            for it in ok:
                it.shadow = None
        return ok, outputs

    async def _shadow(self, decoded: list[_Item]) -> bool:
        """Score ``decoded`` with the challenger too; False (logged, counted) if it fails.

        The challenger applies its own preprocessing (input size, normalisation) from its artifact
        to the champion's decoded pixels. Nothing it does can cost the champion's outputs.
        """
        challenger = self.challenger
        assert challenger is not None
        pixels = [it.pixels for it in decoded if it.pixels is not None]
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(self.inference_pool, challenger.predict_many, pixels)
            for i, it in enumerate(decoded):
                it.shadow = (out.probs[i], out.embeddings[i])
        except Exception as exc:
            logger.error(
                "challenger failed on a batch; it is not shadowed",
                extra={
                    "version": challenger.model_info.version,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                },
            )
            return False
        return True

    async def _prepare(self, it: _Item) -> None:
        """Parse and fetch one record and read its decode cost; failures are recorded on the item."""
        loop = asyncio.get_running_loop()
        try:
            it.event = parse_image_event(it.record.value)
            it.stage = "resolve"
            ev = it.event
            limit = self.settings.refs.inline_max_bytes
            if ev.data is not None:
                if len(ev.data) > limit:
                    raise EventError(
                        DeadLetterReason.TOO_LARGE,
                        f"inline image is {len(ev.data)} bytes, over the {limit} limit",
                    )
                it.data = ev.data
            else:
                assert ev.ref is not None
                it.data = await self.fetcher.fetch(ev.ref)
            if ev.sha256 and sha256_hex(it.data) != ev.sha256:
                raise EventError(DeadLetterReason.CHECKSUM, "image bytes do not match the event's sha256")
            it.stage = "decode"
            it.cost = await loop.run_in_executor(self.decode_pool, self.predictor.decode_cost, it.data)
        except EventError as exc:
            it.error = exc
        except Exception as exc:  # a bug or an unexpected library error: dead-letter, never crash the batch
            logger.exception("unexpected error preparing record", extra={"offset": it.record.offset})
            it.error = _unexpected(exc)

    async def _decode(self, it: _Item) -> None:
        """Decode one fetched record in the decode pool; failures are recorded on the item."""
        assert it.data is not None
        loop = asyncio.get_running_loop()
        try:
            it.pixels = await loop.run_in_executor(self.decode_pool, self.predictor.decode, it.data)
        except EventError as exc:
            it.error = exc
        except Exception as exc:  # a bug or an unexpected library error: dead-letter, never crash the batch
            logger.exception("unexpected error decoding record", extra={"offset": it.record.offset})
            it.error = _unexpected(exc)

    async def _infer(self, ok: list[_Item]) -> list[tuple[np.ndarray, np.ndarray] | EventError]:
        loop = asyncio.get_running_loop()
        # predict_many resizes and stacks in the model thread: no torch op on the event loop's
        # thread (an OpenMP team there would throttle the model's; see Predictor).
        pixels = [it.pixels for it in ok if it.pixels is not None]
        try:
            out = await loop.run_in_executor(self.inference_pool, self.predictor.predict_many, pixels)
            return [(out.probs[i], out.embeddings[i]) for i in range(len(ok))]
        except Exception:
            # Isolate the item that breaks the model instead of failing the whole batch.
            logger.warning("batch inference failed; retrying items one by one", extra={"batch": len(ok)})
            results: list[tuple[np.ndarray, np.ndarray] | EventError] = []
            for it in ok:
                assert it.pixels is not None
                try:
                    one = await loop.run_in_executor(
                        self.inference_pool, self.predictor.predict_many, [it.pixels]
                    )
                    results.append((one.probs[0], one.embeddings[0]))
                except EventError as exc:
                    results.append(exc)
                except Exception as exc:  # a bug on this one image: it alone is dead-lettered
                    logger.exception("unexpected inference error", extra={"offset": it.record.offset})
                    results.append(_unexpected(exc))
            return results

    def _build(
        self,
        items: list[_Item],
        ok: list[_Item],
        outputs: list[tuple[np.ndarray, np.ndarray] | EventError],
        started: datetime,
    ) -> BatchResult:
        """One output per item, each built inside its own guard.

        An unexpected error while building one item's prediction (a broken model output, an
        absurd timestamp, a bug) dead-letters that item as ``internal`` at stage ``emit`` and
        leaves its neighbours alone. If even its dead letter cannot be built, the error
        propagates: the caller must then stop without acking the batch.
        """
        result = BatchResult()
        for it, out in zip(ok, outputs, strict=True):
            if isinstance(out, EventError):
                it.error, it.stage = out, "inference"
                continue
            try:
                prediction = self._prediction(self.predictor, it, out[0], out[1], started, len(ok))
                self.metrics.e2e_seconds.observe(max(prediction.latency_s, 0.0))
            except Exception as exc:
                self._internal(it, exc)
                continue
            result.predictions.append(prediction)
            result.shadow += self._shadow_prediction(it, started, len(ok))
        for it in items:
            if it.error is None:
                continue
            try:
                dead = self._deadletter(it)
            except Exception as exc:
                self._internal(it, exc)
                dead = self._deadletter(it)  # a failure here is fatal for the batch
            result.deadletters.append(dead)
            self.metrics.deadletters.labels(reason=dead.reason.value).inc()
        self.metrics.events_out.inc(len(result.predictions))
        self.metrics.shadow_predictions.inc(len(result.shadow))
        return result

    @staticmethod
    def _internal(it: _Item, exc: Exception) -> None:
        logger.error("unexpected error building an output", extra={"offset": it.record.offset}, exc_info=exc)
        it.error = _unexpected(exc)
        it.stage = "emit"

    def _shadow_prediction(
        self, it: _Item, started: datetime, micro_batch_images: int
    ) -> list[PredictionEvent]:
        """The challenger's prediction for ``it`` (same batch identity as the champion's), if any."""
        challenger = self.challenger
        if it.shadow is None or challenger is None:
            return []
        try:
            return [self._prediction(challenger, it, it.shadow[0], it.shadow[1], started, micro_batch_images)]
        except Exception as exc:  # the champion's prediction stands; only the shadow one is lost
            logger.error(
                "could not build a shadow prediction", extra={"offset": it.record.offset}, exc_info=exc
            )
            return []

    def _prediction(
        self,
        predictor: Predictor,
        it: _Item,
        probs: np.ndarray,
        emb: np.ndarray,
        started: datetime,
        micro_batch_images: int,
    ) -> PredictionEvent:
        assert it.event is not None
        labels = predictor.labels
        best = int(np.argmax(probs))
        return PredictionEvent(
            id=it.event.id,
            label=labels[best],
            confidence=float(probs[best]),
            probs={label: round(float(p), 6) for label, p in zip(labels, probs, strict=True)},
            model=predictor.model_info,
            worker=self.worker_name,
            micro_batch_images=micro_batch_images,
            published_at=it.event.created_at,
            enqueued_at=_ts(it.record.timestamp, it.event.created_at),
            batch_started_at=started,
            emitted_at=utcnow(),
            embedding=emb.astype("<f2").tobytes() if self.settings.worker.emit_embeddings else None,
        )

    def poisoned(self, record: Record) -> BatchResult:
        """The output of a record that was in flight when the worker died twice: never processed again."""
        it = _Item(record, stage="recovery")
        with contextlib.suppress(EventError):  # the id is a courtesy; nothing else is read
            it.event = parse_image_event(record.value)
        it.error = EventError(
            DeadLetterReason.POISON,
            f"in flight when the worker died twice (partition {record.partition}, offset {record.offset});"
            " not processed again",
        )
        dead = self._deadletter(it)
        self.metrics.deadletters.labels(reason=dead.reason.value).inc()
        return BatchResult(deadletters=[dead])

    def _deadletter(self, it: _Item) -> DeadLetterEvent:
        assert it.error is not None
        rec = it.record
        logger.info(
            "dead-lettered",
            extra={
                "reason": it.error.reason.value,
                "offset": rec.offset,
                "partition": rec.partition,
                "error": it.error.message[:300],
            },
        )
        return build_deadletter(
            self.settings,
            Source(rec.key, rec.value, rec.topic, rec.partition, rec.offset),
            reason=it.error.reason,
            message=it.error.message,
            stage=it.stage,
            worker=self.worker_name,
            event_id=it.event.id if it.event else None,
            ref=it.event.ref if it.event else None,
        )
