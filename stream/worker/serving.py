"""The models a worker serves now (champion, optional challenger) and the ones offered to replace them.

A reload (stream/worker/model_reload.py) *offers* a loaded and warmed model; the batch processor
*adopts* offers between micro-batches (at the end of the one running, or at once when none is),
never in the middle of one, so a batch is decoded, classified and labelled by one and the same
model. Adopting at once when idle means an idle worker does not hold two models until traffic comes.

Everything here runs on the event loop's thread: no locks. The reloader awaits the adoption before
it looks for the next version, so at most two models of a role are alive at once (the serving one
and the offered one); the old one's last reference is dropped when the new one is adopted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pawstream.schemas import utcnow
from pawstream.vision.predictor import Predictor

Role = Literal["champion", "challenger"]


@dataclass
class Served:
    predictor: Predictor
    loaded_at: datetime = field(default_factory=utcnow)  # when it began serving


@dataclass
class _Offer:
    served: Served | None  # None: retire the role (a challenger that is no longer wanted)
    adopted: asyncio.Future[None]


class ServingState:
    def __init__(self, champion: Predictor, challenger: Predictor | None = None) -> None:
        self.champion = Served(champion)
        self.challenger: Served | None = Served(challenger) if challenger is not None else None
        self._offers: dict[Role, _Offer] = {}
        self._busy = False
        # Called after every adoption (on the loop's thread), e.g. to update metrics.
        self.on_adopted: list[Callable[[Role, Served | None], None]] = []

    @property
    def busy(self) -> bool:
        return self._busy

    def offer(self, role: Role, predictor: Predictor | None) -> asyncio.Future[None]:
        """Offer ``predictor`` for ``role``; the future resolves once it serves (at once when idle)."""
        previous = self._offers.pop(role, None)
        if previous is not None and not previous.adopted.done():
            previous.adopted.cancel()  # superseded before it served
        if role == "champion" and predictor is None:
            raise ValueError("the champion cannot be retired")
        offer = _Offer(
            Served(predictor) if predictor is not None else None, asyncio.get_running_loop().create_future()
        )
        self._offers[role] = offer
        if not self._busy:
            self._adopt()
        return offer.adopted

    def begin_batch(self) -> None:
        """Adopt the offers, then hold the models until ``end_batch``."""
        self._adopt()
        self._busy = True

    def end_batch(self) -> None:
        """The batch's outputs are built: offers made during it serve from here on."""
        self._busy = False
        self._adopt()

    def _adopt(self) -> None:
        offers, self._offers = self._offers, {}
        for role, offer in offers.items():
            if offer.served is not None:
                offer.served.loaded_at = utcnow()
            if role == "champion":
                assert offer.served is not None
                self.champion = offer.served
            else:
                self.challenger = offer.served
            for callback in self.on_adopted:
                callback(role, offer.served)
            if not offer.adopted.done():
                offer.adopted.set_result(None)
