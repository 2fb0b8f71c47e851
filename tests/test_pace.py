"""The rate controller and `Pace`, on a fake clock: exact cuts, holds, growth and base share."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from batchsms.engine.bucket import SendRateMeter
from batchsms.engine.controller import (
    BETA_MAX,
    EXP_SAMPLES,
    GROWTH,
    HOLD,
    HOLD_GAIN,
    MIN_SAMPLES,
    SETTLE,
    YOUNG_SPAN,
    RateController,
    _BaseShare,
    _Goodput,
    _Judgement,
    _ShareWindow,
    _Verdict,
)
from batchsms.engine.feedback import Answer
from batchsms.engine.pace import Pace
from tests.clocks import FakeClock


class FixedMeter(SendRateMeter):
    """A send-rate meter that always reads ``rate`` (the real one is tested in test_limiter)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.fixed = rate

    def rate(self, now: float) -> float:
        return self.fixed


def answer(ctrl: RateController, t: float, throttled: bool, sent_at: float | None = None) -> float:
    """One answer at ``t``; the rate in force is what holds the sends back (the bucket held one
    just now), as when a run sends at its rate: cuts are not app-limited guesses (rule 4)."""
    sent = t if sent_at is None else sent_at
    ctrl.held(t)
    if throttled:
        return ctrl.on_throttle(t, sent)
    return ctrl.on_success(t, sent)


def feed(ctrl: RateController, start: float, count: int, step: float,
         throttled: Callable[[int], object] = lambda i: False) -> float:
    """``count`` answers ``step`` apart from ``start``, throttled where ``throttled(i)``; returns
    the time after the last one."""
    t = start
    for i in range(count):
        answer(ctrl, t, bool(throttled(i)))
        t += step
    return t


def quota_cut() -> RateController:
    """Sending 100/s against a quota of 50/s: every other answer is a 429."""
    ctrl = RateController(100.0, meter=FixedMeter(100.0))
    feed(ctrl, 0.0, 20, 0.01, lambda i: i % 2)
    return ctrl


def test_untouched_without_429s() -> None:
    """Successes alone leave the configured rate, and --rate 0 stays unlimited."""
    assert feed_rate(RateController(10.0)) == 10.0
    assert feed_rate(RateController(0.0)) == 0.0


def feed_rate(ctrl: RateController) -> float:
    feed(ctrl, 0.0, 500, 0.01)
    return ctrl.rate


def test_a_429_share_within_the_tolerance_does_not_cut() -> None:
    """One 429 in every 20 answers (5%, the tolerated excess) never cuts."""
    ctrl = RateController(100.0, meter=FixedMeter(100.0))
    feed(ctrl, 0.0, 2000, 0.01, lambda i: i % 20 == 19)
    assert ctrl.rate == 100.0


def test_cut_lands_just_under_the_goodput() -> None:
    """Against a quota of 50/s (half the answers 429) the rate goes to HOLD_GAIN * 50 in one cut.

    The cut comes at the 20th answer (MIN_SAMPLES); the goodput is the OK rate since the first
    429: 9 OKs in 0.18 s.
    """
    assert quota_cut().rate == pytest.approx(HOLD_GAIN * 50)


def test_429s_for_requests_sent_before_the_settle_time_are_one_signal() -> None:
    """The 429s still in flight at the cut, and those sent within SETTLE of it, change nothing."""
    ctrl = quota_cut()
    cut = ctrl.rate
    t = 0.2
    for i in range(300):  # 3 s of answers, every one a 429, sent before the settle time
        assert answer(ctrl, t + i * 0.01, True, sent_at=0.19 + SETTLE - 0.001) == cut


def test_a_cut_that_removed_the_429s_keeps_them_ours() -> None:
    """After the cut the 429s are gone: they depended on our rate, the base share stays 0."""
    ctrl = quota_cut()
    t = feed(ctrl, 0.2 + SETTLE, 100, 1 / 48.5)
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 50)
    assert ctrl.base_share(t) == 0.0


def test_a_cut_that_did_not_lower_the_share_is_undone_and_learnt() -> None:
    """10% 429s whatever the rate: one cut, then its judgement learns 10% and the rate climbs
    back (rule 4's ramp: 95 -> 100 within the answers below)."""
    ctrl = RateController(100.0, meter=FixedMeter(100.0))

    def tenth(i: int) -> bool:
        return i % 10 == 9

    t = feed(ctrl, 0.0, 20, 0.01, tenth)
    assert ctrl.rate == pytest.approx(BETA_MAX * 100)  # the OKs since the 429 left at 100/s
    t = feed(ctrl, t + SETTLE, 100, 0.01, tenth)
    assert ctrl.rate == 100.0
    # Learnt by the sequential test, before the 100th answer (the fixed-size test's).
    assert ctrl.base_share(t - 0.01) == pytest.approx(0.1, abs=0.01)
    # The next minute of the same 10% never cuts again.
    for i in range(6000):
        assert answer(ctrl, t + i * 0.01, tenth(i)) == 100.0


def test_a_shallow_cut_cuts_again_without_waiting_for_the_judgement() -> None:
    """A second of OKs, then only 429s: the cut falls back on the OKs of the last second (94)
    and goes only to ~91/s. When the share after it is clearly worse than before, the
    judgement ends early and the next 429 cuts to the quota the OK requests' spacing shows
    (the answers to the requests sent while the cut settles -- half of them 429s, as a quota
    of 50/s answers ~91/s -- are not judged, but they are a second of OKs at the quota)."""
    ctrl = RateController(100.0, meter=FixedMeter(100.0))
    t = feed(ctrl, 0.0, 100, 0.01)
    t = feed(ctrl, t, 6, 0.01, lambda i: True)
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 94)
    t = feed(ctrl, t, 100, 0.01, lambda i: i % 2)  # sent before the settle time: not judged
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 94)
    feed(ctrl, t, 40, 0.01, lambda i: i % 2)
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 50)


def test_the_spacing_stands_where_the_last_second_agrees() -> None:
    """A quota of 50/s: the OKs of the last second are at least its refill, so the spacing
    (the refill rate, measured at once) is the goodput, not the last second's count."""
    goodput = _Goodput()
    for i in range(50):  # a second of OKs at 60/s: 50 of them in the last second
        goodput.on_ok(0.02 * i, 0.02 * i)
    goodput.on_throttle(1.0)
    for i in range(6):  # then OKs at the quota's refill, 50/s
        goodput.on_ok(1.0 + 0.02 * (i + 1), 1.0 + 0.02 * (i + 1))
    assert goodput.rate(1.12) == pytest.approx(50.0)


def test_the_last_second_wins_where_the_spacing_read_a_burst() -> None:
    """The same spacing (50/s), but only 20 OKs in the last whole second: a window's burst."""
    goodput = _Goodput()
    goodput.on_ok(0.0, 0.0)  # the first OK, more than a window ago
    goodput.on_throttle(1.5)
    for i in range(20):
        goodput.on_ok(1.5 + 0.02 * (i + 1), 1.5 + 0.02 * (i + 1))
    assert goodput.rate(1.9) == pytest.approx(20.0)


def test_hold_then_compounded_growth_up_to_the_configured_rate() -> None:
    """After a cut the rate holds HOLD seconds, then grows by GROWTH a second, up to --rate."""
    ctrl = quota_cut()
    cut = ctrl.rate
    feed(ctrl, 0.2 + SETTLE, 100, 0.05)  # judged (dependent) by 6.2 s
    assert answer(ctrl, 0.19 + HOLD - 0.01, False) == cut
    assert answer(ctrl, 0.19 + HOLD + 2.0, False) == pytest.approx(cut * math.exp(2 * GROWTH))
    assert answer(ctrl, 0.19 + HOLD + 60.0, False) == 100.0


def test_rate_zero_switches_on_at_the_first_cut_and_grows_only_with_real_sending() -> None:
    """--rate 0: unlimited until a cut; afterwards growth stays under twice the send rate."""
    meter = FixedMeter(100.0)
    ctrl = RateController(0.0, meter=meter)
    feed(ctrl, 0.0, 20, 0.01, lambda i: i % 2)
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 50)
    meter.fixed = 30.0  # the run sends slower than allowed
    feed(ctrl, 0.2 + SETTLE, 100, 0.05)
    assert answer(ctrl, 0.19 + HOLD + 60.0, False) == pytest.approx(60.0)


@pytest.mark.parametrize("answer_kind", [Answer.FAILED, Answer.REJECTED, Answer.REFUSED])
def test_pace_ignores_answers_that_say_nothing_about_pace(answer_kind: Answer) -> None:
    """5xx/timeouts (the outage guard's business), 401/403 and other 4xx never move the rate."""
    clock = FakeClock()
    pace = Pace(100.0, clock=clock)
    for i in range(1000):
        clock.now = i * 0.01
        assert pace.try_acquire_nowait()
        pace.on_answer(answer_kind if i % 3 == 0 else Answer.OK, sent_at=clock.now)
    assert pace.current_rate == 100.0


def test_pace_follows_a_quota() -> None:
    """Pace feeds OK and THROTTLED answers, with their send times, to the controller."""
    clock = FakeClock()
    pace = Pace(100.0, clock=clock)
    for i in range(200):
        clock.now = i * 0.01
        if pace.try_acquire_nowait():
            pace.on_answer(Answer.THROTTLED if i % 2 else Answer.OK, sent_at=clock.now)
    assert pace.current_rate < 60.0


def test_a_cut_on_one_volley_is_a_guess_followed_by_a_ramp() -> None:
    """128 requests answered at the same instant (10 OK: a quota's burst) say nothing about a
    rate: the cut to HOLD_GAIN * 10 is not held, the rate quadruples each second from it."""
    ctrl = RateController(0.0, meter=FixedMeter(1000.0))
    for i in range(128):
        answer(ctrl, 0.0, i >= 10)
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 10)
    assert answer(ctrl, 1.0, False) == pytest.approx(HOLD_GAIN * 10 * 4)
    assert answer(ctrl, 1.5, False) == pytest.approx(HOLD_GAIN * 10 * 8)


def test_requests_in_flight_at_a_guessed_cut_correct_it() -> None:
    """A volley's 10 OKs answered before its 429s make the cut a guess (9.7/s); the OK requests
    still in flight, sent 20 ms apart after the first 429 left, show the quota (50/s): the rate
    goes to just under it as soon as their spacing is known (TRUST_GAPS gaps)."""
    ctrl = RateController(0.0, meter=FixedMeter(300.0))
    for i in range(20):
        answer(ctrl, 0.2, i >= 10, sent_at=0.0 if i < 10 else 0.001)
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 10)
    for k in range(1, 5):
        answer(ctrl, 0.2 + k * 0.01, False, sent_at=0.02 * k)
        assert ctrl.rate == pytest.approx(HOLD_GAIN * 10)  # stale answers: no ramp either
    answer(ctrl, 0.25, False, sent_at=0.1)
    assert ctrl.rate == pytest.approx(HOLD_GAIN * 50)


def test_ok_answers_kept_for_the_goodput_stay_bounded() -> None:
    """Memory stays flat on a long run without 429s: only the last WINDOW of OKs is kept."""
    ctrl = RateController(100.0, meter=FixedMeter(100.0))
    feed(ctrl, 0.0, 10_000, 0.01, lambda i: False)  # 100 s at 100/s, no 429
    assert len(ctrl._goodput.oks) <= 101


def test_share_window_keeps_a_second_but_at_least_min_samples() -> None:
    """Rule 1 alone: answers older than WINDOW leave, never below MIN_SAMPLES; the excess needs
    MIN_SAMPLES answers and more than EXCESS above the base share (plus its noise)."""
    window = _ShareWindow()
    for i in range(MIN_SAMPLES):
        window.add(float(i), i == 0)
    assert (len(window.answers), window.throttled) == (MIN_SAMPLES, 1)  # old, but too few to drop
    window.add(float(MIN_SAMPLES), False)
    assert (len(window.answers), window.throttled) == (MIN_SAMPLES, 0)
    window.clear()
    for i in range(MIN_SAMPLES):
        window.add(100.0, i < 2)
    assert window.excess(0.0)  # 2 of 20 > 5%
    assert not window.excess(0.1)  # 10% of them are the base share's
    assert window.volley(100.0)
    assert not window.volley(100.0 + 2 * YOUNG_SPAN)


def test_a_cut_that_did_not_move_the_share_is_judged_not_ours() -> None:
    """Rule 3 alone: after a cut from an excess share of 20%, answers with the same share say
    the 429s are not ours to prevent, and the base share learns them; the sequential test says
    so after MIN_SAMPLES (the fixed-size one waited for EXP_SAMPLES). A guessed cut (rule 4) is
    not judged at all."""
    base, judgement = _BaseShare(), _Judgement()
    judgement.start(0.0, 0.2, 0.0, guess=False)
    verdicts = [judgement.add(SETTLE + i * 0.01, i % 5 == 0, base) for i in range(EXP_SAMPLES)]
    decided = verdicts.index(_Verdict.NOT_OURS)
    assert MIN_SAMPLES - 1 <= decided < EXP_SAMPLES // 2
    assert set(verdicts[:decided]) == {_Verdict.PENDING}
    assert base.share == pytest.approx(0.2, abs=0.05)
    assert not judgement.active
    judgement.start(10.0, 0.2, 0.0, guess=True)
    assert not judgement.active
    assert judgement.settle_until == 10.0
