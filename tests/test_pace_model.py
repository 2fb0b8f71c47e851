"""The pace targets, met against a scripted service model on a fake clock (tests/pace_model.py):
each kind of throttle, partial and full outages, deterministically with fixed seeds."""

from __future__ import annotations

import random
import statistics

import pytest

from tests.pace_model import (
    AllOK,
    Failing,
    Foreign,
    QuotaBucket,
    Random429,
    WindowAdmitted,
    WindowAll,
    drive,
)

SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rate", [0.0, 200.0])
def test_token_bucket_quota_is_held_with_few_429s(rate: float, seed: int) -> None:
    """Quota 50/s (burst 50, rejected requests free), --rate 0 or 4Q: goodput >= 0.95 Q, <= 5%
    429s."""
    result = drive(QuotaBucket(50, 50), rate=rate, lines=1000, seed=seed)
    assert result.done == 1000
    assert result.goodput >= 0.95 * 50
    assert result.throttled_share <= 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_a_small_quota_burst_is_not_read_as_the_quota(seed: int) -> None:
    """Quota 50/s with a 10-token burst, 128 in flight (the bench's setting). At --rate 200 the
    quota is found from the OK requests' spacing; at --rate 0 the first volley, answered all at
    once, reads as 10/s: a guess, from which the rate ramps up until the next cut."""
    fast = drive(QuotaBucket(50, 10), rate=200, lines=1000, seed=seed, concurrency=128,
                 latency=0.003)
    assert fast.goodput >= 0.95 * 50
    assert fast.throttled_share <= 0.05
    volley = drive(QuotaBucket(50, 10), rate=0, lines=1000, seed=seed, concurrency=128,
                   latency=0.003)
    assert volley.goodput >= 0.95 * 50
    # 118 of the first 128 requests are 429s before any answer is back: no controller helps.
    assert volley.throttled - 118 <= 0.05 * 1000


@pytest.mark.parametrize("seed", SEEDS)
def test_quota_without_burst_credit_is_found_too(seed: int) -> None:
    """Quota 50/s with no burst at all, --rate 200: 429s at once; the cut follows the goodput."""
    result = drive(QuotaBucket(50, 1), rate=200, lines=1000, seed=seed)
    assert result.done == 1000
    assert result.goodput >= 0.75 * 50
    assert result.throttled_share <= 0.05


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lines", [200, 600, 2000])
def test_window_counting_every_arrival_is_held_under(lines: int, seed: int) -> None:
    """A 1 s window of 20 arrivals that counts the rejected ones too, --rate 5Q: >= 0.85 Q."""
    result = drive(WindowAll(20), rate=100, lines=lines, seed=seed)
    assert result.done == lines
    assert result.goodput >= 0.85 * 20


@pytest.mark.parametrize("seed", SEEDS)
def test_window_counting_admitted_requests_is_held_under(seed: int) -> None:
    """The simulator's --throttle-rate 20 (a one-second window of admitted requests, which lets
    them through in bursts at our pace) at --rate 50, Retry-After 1, after a slow start: >= 0.9
    L with <= 5% 429s. The spacing of a burst read 41/s, the cut to ~40/s left half the
    answers 429s, and the judgement learnt them as "not ours": 40% 429s for the whole run."""
    result = drive(WindowAdmitted(20), rate=50, lines=1000, seed=seed, retry_after=1.0,
                   slow_start=0.3, slow_latency=0.03)
    assert result.done == 1000
    assert result.goodput >= 0.9 * 20
    assert result.throttled_share <= 0.05


@pytest.mark.parametrize(("slow_start", "slow_latency"), [(0.2, 0.02), (0.3, 0.03), (0.5, 0.025)])
def test_the_readme_walk_through_ends_every_line_succeeded(slow_start: float,
                                                           slow_latency: float) -> None:
    """The README's rehearsal: 100 lines at --rate 50 against --throttle-rate 20, 5% of
    requests failing 5xx, --retry-after 1, --max-attempts 5: no line runs out of attempts, on
    any of 20 seeds (7 of 20 did, spending 4 attempts on 429s)."""
    for seed in range(1, 21):
        service = Failing(WindowAdmitted(20), 0.0, 1e9, 0.05, random.Random(seed))
        result = drive(service, rate=50, lines=100, seed=seed, retry_after=1.0,
                       slow_start=slow_start, slow_latency=slow_latency)
        assert (result.done, result.failed) == (100, 0), seed


@pytest.mark.parametrize("seed", SEEDS)
def test_random_429s_do_not_drive_the_rate_down(seed: int) -> None:
    """10% of requests 429 at random, --rate 100: the sustained rate stays >= 0.6 R (was ~4/s)."""
    result = drive(Random429(0.1, random.Random(seed)), rate=100, lines=800, seed=seed)
    assert result.done == 800
    assert result.send_rate(0.0, result.elapsed) >= 60
    long = drive(Random429(0.1, random.Random(seed)), rate=100, lines=8000, seed=seed)
    assert long.send_rate(0.0, long.elapsed) >= 80


@pytest.mark.parametrize("seed", SEEDS)
def test_a_partial_outage_keeps_the_rate(seed: int) -> None:
    """30% of requests 503 for 20 s at --rate 100: the rate stays at 100, no outage is seen."""
    service = Failing(AllOK(), 10.0, 30.0, 0.3, random.Random(seed))
    result = drive(service, rate=100, lines=3000, seed=seed)
    assert result.send_rate(12.0, 28.0) >= 95
    assert result.in_flight_in_outage == 0
    assert result.failed <= 5  # 0.3**5 of ~2000 lines: the attempts, not the pace
    assert result.elapsed <= 30 + 25


@pytest.mark.parametrize("seed", SEEDS)
def test_a_full_outage_is_ridden_out_with_probes(seed: int) -> None:
    """Every request fails for 10 s in a 3 000-line run at --rate 100: every line succeeds, in
    the ideal time + the outage + little, with one probe at a time meanwhile."""
    service = Failing(AllOK(), 10.0, 20.0, 1.0, random.Random(seed))
    result = drive(service, rate=100, lines=3000, seed=seed)
    assert result.done == 3000
    assert result.elapsed <= 30 + 10 + 5
    assert result.in_flight_in_outage == 1
    assert sum(11.0 <= t < 20.0 for t in result.sends) <= 20


def test_an_endless_outage_gives_up_after_max_outage_having_sent_only_probes() -> None:
    """The service dies at 5 s and never comes back: the guard gives up max_outage later."""
    service = Failing(AllOK(), 5.0, 1e9, 1.0, random.Random(1))
    result = drive(service, rate=100, lines=3000, max_outage=60.0)
    assert result.gave_up
    assert 65.0 <= result.elapsed <= 67.0
    assert result.in_flight_in_outage == 1
    # Probes 0.5 s apart for 5 s, a tenth of the outage's age until 50 s, then 5 s apart:
    # 10 + 10*ln(10) + 2 = 35 requests in the minute, against 6 000 at the asked rate.
    assert sum(t >= 6.0 for t in result.sends) <= 36


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rate", [0.0, 100.0])
def test_foreign_429s_during_slow_start_do_not_pin_the_rate(rate: float, seed: int) -> None:
    """10% rate-independent 429s while the run is still held at ~3 sends/s by one request in
    flight (slow start on a loaded machine, 8 s): the cuts they trip are taken from a rate that
    was not what held the sends back, so they are guesses and do not hold. Before, the rate was
    cut to ~3/s, then ~2/s, and the 200 lines took 70-95 s (ideal ~10 s)."""
    result = drive(Random429(0.1, random.Random(seed)), rate=rate, lines=200, seed=seed,
                   slow_start=8.0)
    assert result.done == 200
    assert result.elapsed <= 16.0


# The 429 classification (issue 22): 429s our rate causes (a quota: they cluster as we push) are
# a signal to slow; those it does not (another client sharing the quota: uniform whatever our
# rate) are noise to retry around. The controller's base share is what it learnt "not ours".


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rate", [0.0, 200.0])
def test_quota_429s_are_read_as_ours(rate: float, seed: int) -> None:
    """The bench's quota (50/s, 10-token burst, 16 in flight), 1 000 lines: goodput >= 0.95 Q
    and nothing learnt as "not ours". The issue's <= 2% of 429s holds at --rate 200 (1.2%); at
    --rate 0 it is 3.0%, half of it the first unpaced volley (15 tries at once against 10
    tokens, and the tries their OKs release before the first 429 is back)."""
    result = drive(QuotaBucket(50, 10), rate=rate, lines=1000, seed=seed)
    assert result.done == 1000
    assert result.goodput >= 0.95 * 50
    assert result.throttled_share <= (0.035 if rate == 0 else 0.02)
    assert result.base_share <= 0.01


def test_foreign_429s_are_read_as_not_ours() -> None:
    """10% rate-independent 429s at --rate 100, 800 lines (ideal 800 / 90 = 8.9 s): median of
    five seeds within 1.10 of the ideal (1.05; the spread is the tail of the last lines'
    backoffs), and the share learnt as "not ours"."""
    ideal = 800 / 90
    results = [drive(Random429(0.1, random.Random(seed)), rate=100, lines=800, seed=seed)
               for seed in range(1, 6)]
    assert all(r.done == 800 for r in results)
    assert statistics.median(r.elapsed for r in results) <= 1.10 * ideal
    assert all(r.elapsed <= 1.25 * ideal for r in results)
    assert all(r.base_share >= 0.05 for r in results)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rate", [0.0, 200.0])
def test_quota_and_foreign_429s_at_once(rate: float, seed: int) -> None:
    """The quota of the bench with 10% foreign 429s on top (they cost it no token), 1 500
    lines: the foreign share learnt, and most of the quota used. Weaker than
    the quota alone (median 0.92 Q at --rate 200, 18% 429s against the 10% unavoidable): a
    verdict "not ours" learns the whole share after a cut, and false cuts on noise are judged
    against the share that tripped them (regression to the mean reads them as helping). A line
    in 1 500 may spend its 5 attempts on 429s. Left for the next round."""
    service = Foreign(QuotaBucket(50, 10), 0.1, random.Random(seed))
    result = drive(service, rate=rate, lines=1500, seed=seed)
    assert result.failed <= 2
    assert result.goodput >= 0.6 * 50
    assert 0.03 <= result.base_share <= 0.2
    assert result.throttled_share <= 0.3
