"""The outage guard on a fake clock: when it trips, what clears it, probes, giving up."""

from __future__ import annotations

import random

import pytest

from batchsms.engine.feedback import Answer
from batchsms.engine.outage import MIN_FAILED, PROBE_CAP, PROBE_FIRST, OutageGuard
from tests.clocks import FakeClock


def test_min_failed_failures_in_a_row_are_an_outage() -> None:
    """Nine failures are not an outage yet, the tenth (MIN_FAILED) makes one."""
    guard = OutageGuard(clock=FakeClock(100.0))
    for _ in range(MIN_FAILED - 1):
        guard.on_answer(Answer.FAILED)
    assert not guard.in_outage
    guard.on_answer(Answer.FAILED)
    assert guard.in_outage


def test_most_of_the_recent_answers_failing_is_an_outage() -> None:
    """18 failures among the last 20 answers (90%) trip it, 17 do not."""
    guard = OutageGuard(clock=FakeClock(100.0))
    for answer in [Answer.OK, *[Answer.FAILED] * 9] * 2:  # 18 of 20
        guard.on_answer(answer)
    assert guard.in_outage
    guard = OutageGuard(clock=FakeClock(100.0))
    for answer in [Answer.OK, Answer.OK, *[Answer.FAILED] * 9, Answer.OK, *[Answer.FAILED] * 8]:
        guard.on_answer(answer)
    assert not guard.in_outage


def test_after_a_long_run_of_successes_it_takes_18_failures_of_the_next_20() -> None:
    """The window is full of successes (the guard's fast path for them): 17 failures among the
    next 20 answers are not an outage, the 18th is."""
    guard = OutageGuard(clock=FakeClock(100.0))
    for _ in range(1000):
        guard.on_answer(Answer.OK)
    for answer in [Answer.OK, Answer.OK, *[Answer.FAILED] * 17]:
        guard.on_answer(answer)
    assert not guard.in_outage
    guard.on_answer(Answer.FAILED)  # 18 of the last 20
    assert guard.in_outage


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_30_percent_partial_outage_is_not_an_outage(seed: int) -> None:
    """100 000 answers, 30% of them failed at random: never an outage."""
    guard = OutageGuard(clock=FakeClock(100.0))
    rng = random.Random(seed)
    for _ in range(100_000):
        guard.on_answer(Answer.FAILED if rng.random() < 0.3 else Answer.OK)
        assert not guard.in_outage


@pytest.mark.parametrize("answer", [Answer.OK, Answer.THROTTLED, Answer.REFUSED, Answer.REJECTED])
def test_any_answer_that_is_not_a_failure_ends_it(answer: Answer) -> None:
    """A success, a 429, a 4xx or a 401 all prove the service answers again."""
    clock = FakeClock(100.0)
    guard = OutageGuard(clock=clock)
    for _ in range(30):
        guard.on_answer(Answer.FAILED)
    clock.now += 7
    assert guard.outage_for == pytest.approx(7.0)
    guard.on_answer(answer)
    assert not guard.in_outage
    assert guard.outage_for == 0.0


def test_probes_space_out_to_a_cap() -> None:
    """PROBE_FIRST at first, a tenth of the outage's length after 5 s, PROBE_CAP after 50 s."""
    clock = FakeClock(100.0)
    guard = OutageGuard(clock=clock)
    for _ in range(MIN_FAILED):
        guard.on_answer(Answer.FAILED)
    delays = []
    for seconds in (0, 4, 10, 30, 50, 300):
        clock.now = 100.0 + seconds
        delays.append(guard.probe_delay())
    assert delays == pytest.approx([PROBE_FIRST, PROBE_FIRST, 1.0, 3.0, PROBE_CAP, PROBE_CAP])


def test_outage_for_counts_from_the_first_failure_and_gives_up_at_max_outage() -> None:
    """outage_for runs from the streak's first failure; given_up once it reaches max_outage."""
    clock = FakeClock(100.0)
    guard = OutageGuard(max_outage=60.0, clock=clock)
    guard.on_answer(Answer.FAILED)
    clock.now += 2.0
    for _ in range(MIN_FAILED - 1):
        guard.on_answer(Answer.FAILED)
    assert guard.outage_for == pytest.approx(2.0)
    clock.now = 100.0 + 59.9
    assert not guard.given_up
    clock.now = 100.0 + 60.0
    assert guard.given_up


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        OutageGuard(max_outage=0)
