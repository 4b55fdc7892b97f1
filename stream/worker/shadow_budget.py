"""How many micro-batches the challenger may shadow: a budget of inference time.

``worker.shadow_budget`` is the challenger inference seconds allowed per champion inference second.
Every batch adds ``budget x champion seconds`` of credit and a shadowed batch spends the challenger's
seconds; a batch is shadowed while the credit is not negative, so the decision is taken before the
batch (it is shadowed whole or not at all) and a slow challenger only overdraws by one batch.
Over a run the challenger's share of the inference thread is then at most about
``budget / (1 + budget)``: with 0.5, throughput stays above 1/1.5 = 67% of unshadowed, whatever the
challenger costs. A same-size challenger (as costly as the champion) needs a budget of at least 1
to shadow every batch; 0.5 shadows about every other one.

The credit is capped (``burst_s``): a long spell of a cheap challenger does not save up for a later
spell of an expensive one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ShadowBudget:
    ratio: float
    burst_s: float = 5.0
    credit_s: float = 0.0

    def allow(self) -> bool:
        """Whether the next batch is shadowed."""
        return self.ratio > 0 and self.credit_s >= 0

    def record(self, champion_s: float, challenger_s: float) -> None:
        """Account one batch: the champion's inference seconds and the challenger's (0 if skipped)."""
        cap = self.burst_s * self.ratio
        self.credit_s = min(cap, self.credit_s + self.ratio * champion_s - challenger_s)
