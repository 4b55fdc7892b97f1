"""The shadow budget: the challenger's share of inference time stays within worker.shadow_budget."""

from __future__ import annotations

import pytest

from stream.worker.shadow_budget import ShadowBudget


def _run(budget: ShadowBudget, champion_s: float, challenger_s: float, batches: int) -> tuple[int, float]:
    shadowed, spent = 0, 0.0
    for _ in range(batches):
        cost = challenger_s if budget.allow() else 0.0
        shadowed += cost > 0
        spent += cost
        budget.record(champion_s, cost)
    return shadowed, spent


@pytest.mark.parametrize("slowdown", [1.0, 2.0, 10.0])
def test_a_slow_challenger_gets_no_more_than_its_budget(slowdown: float) -> None:
    budget = ShadowBudget(0.5, burst_s=5.0)
    champion_s, batches = 0.1, 1000
    shadowed, spent = _run(budget, champion_s, champion_s * slowdown, batches)
    allowed = 0.5 * champion_s * batches
    # Never over the budget by more than one batch's overdraft.
    assert spent <= allowed + champion_s * slowdown
    # And it uses the budget rather than starving: within one batch's cost of it.
    assert spent >= allowed - champion_s * slowdown - 5.0 * 0.5
    # Throughput: champion time over total time stays above 1 / (1 + budget).
    assert champion_s * batches / (champion_s * batches + spent) >= 1 / 1.5 - 0.01
    assert 0 < shadowed < batches


def test_a_cheap_challenger_shadows_every_batch() -> None:
    shadowed, _ = _run(ShadowBudget(1.0), 0.1, 0.05, 200)
    assert shadowed == 200


def test_zero_means_no_shadow() -> None:
    assert _run(ShadowBudget(0.0), 0.1, 0.01, 50) == (0, 0.0)


def test_credit_is_capped_so_a_cheap_spell_does_not_pay_for_a_slow_one() -> None:
    budget = ShadowBudget(0.5, burst_s=2.0)
    _run(budget, 0.1, 0.0001, 10_000)  # a long spell of an almost free challenger
    assert budget.credit_s <= 1.0
    _shadowed, spent = _run(budget, 0.1, 1.0, 20)  # then a challenger 10x the champion
    assert spent <= 1.0 + 0.5 * 0.1 * 20 + 1.0
