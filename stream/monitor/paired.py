"""Paired figures: labelled ids that both the champion and the challenger predicted.

The side-by-side view's cumulative accuracies cover different images (the challenger only sees
the batches it shadowed within the budget) and different spans (the champion's run since the
monitor started). A guarded promote wants the same images for both: an id whose label joined
the champion's prediction and the challenger's counts once per (champion version, challenger
version), with whether each got it right.

Each join reports its match separately and in any order, so the first half waits here for the
second. The table is in memory and bounded (``monitoring.join_max_entries``, oldest first): a
half lost to the bound or a restart only means that id is not paired, never a wrong count.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from stream.monitor.join import Match
from stream.monitor.model_view import Role


@dataclass(frozen=True)
class Paired:
    champion_version: str
    challenger_version: str
    champion_correct: bool
    challenger_correct: bool


class PairedTally:
    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._pending: OrderedDict[str, tuple[Role, str, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, role: Role, match: Match) -> Paired | None:
        """``role``'s join matched ``match``; the pair once the other role's half is here too."""
        half = (role, match.prediction.version, match.correct)
        other = self._pending.get(match.id)
        if other is not None and other[0] is not role:
            del self._pending[match.id]
            champion, challenger = (half, other) if role is Role.CHAMPION else (other, half)
            return Paired(champion[1], challenger[1], champion[2], challenger[2])
        self._pending[match.id] = half
        self._pending.move_to_end(match.id)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
        return None
