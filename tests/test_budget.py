"""The retry budget on a fake clock: relative to traffic, sliding, refilling, never exhausted."""

from __future__ import annotations

import math

import pytest

from batchsms.engine.budget import MIN_PER_SECOND, PERCENT, SLOT, TTL, RetryBudget
from tests.clocks import FakeClock


def spend_all(budget: RetryBudget) -> int:
    n = 0
    while budget.try_spend():
        n += 1
        budget.on_request(retry=True)
    return n


def test_floor_alone_allows_min_per_second_over_the_window() -> None:
    """With no first attempts the floor allows MIN_PER_SECOND * TTL retries, then says wait."""
    clock = FakeClock()
    budget = RetryBudget(clock=clock)
    assert spend_all(budget) == MIN_PER_SECOND * TTL == 100
    assert budget.wait_hint() == pytest.approx(SLOT + TTL)


def test_first_attempts_add_their_share() -> None:
    """Every first attempt allows PERCENT of a retry more: 500 of them allow 100 more."""
    clock = FakeClock()
    budget = RetryBudget(clock=clock)
    for _ in range(500):
        budget.on_request(retry=False)
    assert spend_all(budget) == 100 + PERCENT * 500


def test_the_window_slides_and_the_budget_refills() -> None:
    """Retries spent leave the window after TTL: a long run never drains the budget for good."""
    clock = FakeClock()
    budget = RetryBudget(clock=clock)
    total = 0
    for step in range(1200):  # ten minutes of retries as fast as the budget allows
        clock.now = step * SLOT
        total += spend_all(budget)
    # The reserve comes back whole each time its slot leaves the window, TTL + SLOT later.
    assert total == 100 * math.ceil(600 / (TTL + SLOT))
    clock.now = 600.0 + TTL + SLOT
    assert budget.wait_hint() == 0.0
    assert budget.try_spend()


def test_wait_hint_is_when_the_oldest_retry_leaves() -> None:
    """Denied at 3.2 s after spending the reserve at 0.2 s: yes again at 10.5 s, not before."""
    clock = FakeClock()
    budget = RetryBudget(clock=clock)
    clock.now = 0.2
    spend_all(budget)
    clock.now = 3.2
    assert not budget.try_spend()
    assert budget.wait_hint() == pytest.approx(7.3)
    clock.now = 3.2 + 7.3 - 0.01
    assert not budget.try_spend()
    clock.now = 3.2 + 7.3
    assert budget.try_spend()


def test_first_attempts_are_not_limited() -> None:
    """on_request(retry=False) never asks the budget: first attempts always go."""
    clock = FakeClock()
    budget = RetryBudget(clock=clock, min_per_second=0.0)
    for _ in range(10_000):
        budget.on_request(retry=False)
    assert spend_all(budget) == 2000


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryBudget(ttl=0)
