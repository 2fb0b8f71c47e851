"""The rate controller: the rate to send at, moved by the service's answers (OK and 429 only: a
5xx or a timeout says the service is in trouble, not that we are too fast; the outage guard
reads those). `Pace` (``engine/pace.py``) puts it in front of the token bucket
(``batchsms.engine.bucket``), which enforces whatever rate it says.

This module is longer than ~300 lines on purpose: it is one state machine, and every constant
sits next to the reason for its value, which is most of its length.

A service throttles in one of three ways, and the controller must
hold the right rate against each: a gateway token-bucket quota (past the quota, goodput stays at
the quota and the 429 share grows), a sliding window that counts every arrival (past the limit
almost everything fails), and 429s that do not depend on our rate at all (other clients spend the
same account quota). botocore's rule -- every 429 cuts the rate -- handles the first two and
ratchets to the floor under the third. So:

1. **Decrease on an excess 429 share, not on a 429.** Answers are kept for the last ``WINDOW``
   seconds (at least the last ``MIN_SAMPLES``). The rate is cut only when the 429 share among
   them is significantly above the *base share* ``p0`` (429s that do not depend on our rate,
   learnt in step 3): ``throttled - n*p0 > n*EXCESS + Z*sqrt(n*p0*(1-p0))``.
2. **Cut to the goodput, then hold.** The new rate is ``HOLD_GAIN`` times the goodput: the rate
   at which the OK requests since the first 429 were sent (while throttled, a quota lets
   requests through at exactly its refill rate), once there are ``TRUST_GAPS`` gaps between
   them; with fewer, at least the OK answers of the last ``WINDOW`` seconds over ``WINDOW``;
   clamped to at most ``BETA_MAX`` times the rate in force (the measured send rate when
   unlimited) and at least the floor. Against a quota the goodput *is* the quota, so the
   rate lands just below it in one step, with no halving cascade (BBR: steer by
   delivery rate, not by losses). After a cut the rate holds for ``HOLD`` seconds, then climbs
   by ``GROWTH`` per second (compounded) to probe for more, never above ``--rate``; with
   ``--rate 0`` never above ``MAX_RATE_ADJUST_SCALE`` times the measured send rate (botocore's
   rule: the rate only grows while the run really uses it).
3. **Check that backing off helped.** Answers to requests sent within ``SETTLE`` seconds of a cut
   are ignored: they answer a rate already given up, and a service that counts the last second
   of arrivals needs that long to forget the overshoot (so a burst of 429s for requests in flight
   together is one signal, as TCP reacts once per window of losses). The next ``EXP_SAMPLES``
   answers (or those of ``EXP_MAX`` seconds, whichever comes first) judge the cut: if the share
   above ``p0`` stayed between ``INDEPENDENT`` and 1/``INDEPENDENT`` times what it was (half to
   twice, give or take ``Z`` deviations of binomial noise), the 429s do not come from our rate.
   Then their share becomes ``p0`` and the rate goes back to where it was before the cuts. A
   share clearly below ``p0`` lowers ``p0`` to it (a wrong "not ours" is corrected by the next
   cut). A share that clearly *grew* (beyond twice) means the cut was too shallow -- the goodput
   was inflated by a quota's burst credit -- and ends the judgement early, so the next 429 cuts
   again. ``p0`` halves every ``BASE_HALF_LIFE`` seconds, so once the other clients stop it
   fades, and a persisting background is re-learnt by the next cut (a brief dip every minute or
   two).
4. **A first volley is a guess.** A cut taken with no spacing of OK requests to go by, when
   the last ``MIN_SAMPLES`` answers came within ``YOUNG_SPAN`` (``--rate 0``: the first requests
   in flight are all answered at once), is not held: the rate grows by ``STARTUP_GROWTH`` from it
   at once, and the next cut, on real spacing, sets it.

Time comes from outside (``now``, ``sent_at`` are passed in), so tests drive it exactly.
"""

from __future__ import annotations

import math
from collections import deque

from batchsms.engine.bucket import SendRateMeter, check_rate

MIN_RATE = 0.5
"""Requests/s a throttled run never drops below (botocore's ``_MIN_RATE``)."""

MAX_RATE_ADJUST_SCALE = 2.0
"""With ``--rate 0``, growth never lifts the rate above this times the measured send rate."""

WINDOW = 1.0
"""Seconds of answers the 429 share and the goodput are measured over: gateway quotas are per
second, and a second of answers at any useful rate is enough to see a share of a few percent."""

MIN_SAMPLES = 20
"""The share window keeps at least this many answers (at low rates it spans more than
``WINDOW``), and no decision is taken on fewer: one 429 in 20 is 5%, the tolerated excess."""

EXCESS = 0.05
"""429 share above the base share that counts as "too fast": the tolerated cost of probing
(the issue asks for at most 5% 429s against a quota)."""

Z = 2.0
"""Standard deviations of binomial noise around the base share that are not yet an excess: with
10% random 429s and 100 answers a window, a false cut then comes about once a minute at most."""

HOLD_GAIN = 0.97
"""A cut sets the rate to this share of the goodput: just under the quota, so a window that
counts every arrival is not overrun by network jitter, and still >= 0.95 of the quota."""

BETA_MAX = 0.95
"""A cut always lowers the rate to at most this times the rate really sent at, even when the
goodput measured is higher (a quota's burst credit can make it look so)."""

TRUST_GAPS = 4
"""Gaps between OK requests from which their spacing alone measures a quota's refill rate;
with fewer, the OKs of the last second are a floor under it. The requests in flight at a cut
keep measuring: when they show a goodput above the cut rate by more than 1/``HOLD_GAIN``**2,
the rate goes up to just under it (a cut taken before any spacing was known was a guess)."""

SETTLE = 1.0
"""Seconds after a cut whose requests are not judged: a per-second window needs a second to
forget the overshoot, and requests in flight at the cut answer the old rate."""

HOLD = 10.0
"""Seconds the rate holds after a cut before it probes upwards. Probing past a window that
counts every arrival costs about a second of failures, so probing once per ~10 s keeps that
under a tenth; a batch of hours loses little by finding more capacity 10 s later."""

GROWTH = 0.05
"""Relative growth per second while probing (compounded): from the hold, the quota is passed
within a second, +5% (where the 429 excess trips a cut) within two, double within 14 s."""

YOUNG_SPAN = 0.1
"""Seconds within which ``MIN_SAMPLES`` answers came all at once, as a volley (see `_cut`)."""

STARTUP_GROWTH = math.log(4)
"""Relative growth per second after a guessed cut: the rate quadruples each second until the
next cut, so a quota five times the guess is found in about 1.2 s."""

EXP_SAMPLES = 100
"""Answers that judge whether a cut lowered the 429 share, at least; more while they cannot yet
tell half the excess before the cut from none (``Z`` deviations): 100 suffice from an excess of
8%, a 2% excess needs 400."""

EXP_MAX = 10.0
"""Seconds after which the judgement is taken with what was seen (at least ``MIN_SAMPLES``
answers); if that cannot tell, the cut stands."""

EPISODE_GAP = 0.5
"""Seconds between the requests of two 429s beyond which the second starts a new episode."""

INDEPENDENT = 0.5
"""A cut after which the excess 429 share is between this and its inverse times what it was did
not address their cause. The share before is measured early in an episode, diluted by the OKs
before it, so a quota overshot by a cut on a noisy goodput can look "not ours" for one cycle:
the restored rate then trips a cut at once, whose judgement lowers ``p0`` again."""

BASE_HALF_LIFE = 60.0
"""Seconds in which the learnt base share halves, so that it fades when the background stops."""



def _noise(share: float, n: int) -> float:
    """``Z`` standard deviations of a share ``share`` measured on ``n`` answers."""
    return Z * math.sqrt(share * (1 - share) / n)




class _Spacing:
    """The OK requests sent since a 429's request was (an episode of throttling): how many, and
    the send times of the first and the last; their spacing is a quota's refill rate."""

    __slots__ = ("count", "first", "last", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.first = self.last = start

    def add(self, sent: float) -> None:
        if sent < self.start:
            return
        if not self.count:
            self.first = sent
        self.last = max(self.last, sent)
        self.count += 1

    @property
    def known(self) -> bool:
        """Enough OK requests, sent apart, for their spacing to stand alone."""
        return self.count - 1 >= TRUST_GAPS and self.last > self.first

    def rate(self) -> float | None:
        """OK requests per second, or None with fewer than two sent apart."""
        span = self.last - self.first
        return (self.count - 1) / span if self.count >= 2 and span > 0 else None


class RateController:
    """The rate to send at, steered by the share of 429s and the goodput (module docstring).

    ``max_rate == 0`` means unlimited until the service pushes back. ``rate`` is 0.0 while
    unlimited. ``meter`` is the send rate really achieved, fed by the owner (`Pace` records
    every send in it); the controller only reads it.
    """

    def __init__(self, max_rate: float, *, min_rate: float = MIN_RATE,
                 meter: SendRateMeter | None = None) -> None:
        self._max_rate = check_rate(max_rate)
        if min_rate <= 0:
            raise ValueError("min_rate must be > 0")
        # A user asking for less than twice the floor can still be slowed by a quota.
        self._min_rate = min(min_rate, self._max_rate / 2) if self._max_rate else min_rate
        self._meter = meter if meter is not None else SendRateMeter()
        self._rate = self._max_rate
        # Answers (time, throttled) to requests sent since the settle time; `_throttled` counts
        # the True ones. OK answer times of any request, for the goodput.
        self._answers: deque[tuple[float, bool]] = deque()
        self._throttled = 0
        self._oks: deque[float] = deque()
        # The OK requests since the first fresh 429 (None before it); and the episode a cut
        # ended, still fed by the requests in flight at the cut (sent before `_cut_at`).
        self._episode: _Spacing | None = None
        self._in_flight: _Spacing | None = None
        self._cut_at = -math.inf
        self._cut_from = 0.0
        self._last_throttle_sent = -math.inf
        self._settle_until = -math.inf
        self._hold_until = -math.inf
        self._last_growth = -math.inf
        self._growth = GROWTH
        self._base = 0.0
        self._base_at = 0.0
        # The rate before the current run of cuts, restored if they prove useless.
        self._peak: float | None = None
        # The judgement of the last cut: the excess share before it, and the counts after.
        self._judging = False
        self._excess_before = 0.0
        self._judged = 0
        self._judged_throttled = 0

    @property
    def rate(self) -> float:
        """Requests/s to send at now; 0.0 means unlimited."""
        return self._rate

    @property
    def max_rate(self) -> float:
        """The configured ceiling; 0.0 means none."""
        return self._max_rate

    def base_share(self, now: float) -> float:
        """The learnt share of 429s that do not depend on our rate, faded to ``now``."""
        return self._base * math.pow(0.5, max(0.0, now - self._base_at) / BASE_HALF_LIFE)

    def on_success(self, now: float, sent_at: float | None = None) -> float:
        """A request sent at ``sent_at`` succeeded. Returns the rate now in force."""
        oks = self._oks
        oks.append(now)
        if oks[0] < now - WINDOW:  # only the last WINDOW is read (`_goodput`): memory stays flat
            self._drop_old_oks(now)
        sent = now if sent_at is None else sent_at
        if self._episode is not None:
            self._episode.add(sent)
        if self._in_flight is not None and sent <= self._cut_at:
            self._correct(sent)
        if self._record(now, sent_at, throttled=False) and self._rate:  # 0: nothing to grow
            self._grow(now)
        return self._rate

    def on_throttle(self, now: float, sent_at: float | None = None) -> float:
        """A request sent at ``sent_at`` got HTTP 429. Returns the rate now in force.

        A caller that cannot tell ``sent_at`` passes None: the answer then counts as fresh.
        """
        if not self._record(now, sent_at, throttled=True):
            return self._rate
        sent = now if sent_at is None else sent_at
        # An episode is 429s no more than EPISODE_GAP apart: a stray 429 long before the quota
        # was reached must not dilute the spacing with the OKs of a slower rate.
        if self._episode is None or sent - self._last_throttle_sent > EPISODE_GAP:
            self._episode = _Spacing(sent)
        self._last_throttle_sent = sent
        if not self._judging and self._excess(now):
            self._cut(now)
        return self._rate

    def _record(self, now: float, sent_at: float | None, *, throttled: bool) -> bool:
        """Add one answer to the share window; False if it answers a rate already given up."""
        if sent_at is not None and sent_at <= self._settle_until:
            return False
        answers = self._answers
        answers.append((now, throttled))
        self._throttled += throttled
        horizon = now - WINDOW
        while len(answers) > MIN_SAMPLES and answers[0][0] < horizon:
            self._throttled -= answers.popleft()[1]
        if self._judging:
            self._judged += 1
            self._judged_throttled += throttled
            waited = now - self._settle_until >= EXP_MAX
            if (self._judged >= EXP_SAMPLES and (self._telling() or waited)) or (
                    self._judged >= MIN_SAMPLES and waited):
                self._judge(now)
            elif self._judged >= MIN_SAMPLES and self._worse(now):
                self._judging = False  # the cut was not deep enough: the next 429 cuts again
        return True

    def _telling(self) -> bool:
        """Enough answers since the cut to tell a share of half the excess before it from 0."""
        low = INDEPENDENT * self._excess_before
        return low - _noise(low, self._judged) > 0

    def _worse(self, now: float) -> bool:
        """Since the cut the excess share is clearly above what it was before it."""
        n, high = self._judged, min(1.0, self._excess_before / INDEPENDENT)
        return self._judged_throttled / n - self.base_share(now) > high + _noise(high, n)

    def _excess(self, now: float) -> bool:
        n = len(self._answers)
        if n < MIN_SAMPLES:
            return False
        p0 = self.base_share(now)
        return self._throttled - n * p0 > n * EXCESS + Z * math.sqrt(n * p0 * (1 - p0))

    def _drop_old_oks(self, now: float) -> None:
        oks = self._oks
        horizon = now - WINDOW
        while oks and oks[0] < horizon:
            oks.popleft()

    def _goodput(self, now: float) -> float:
        self._drop_old_oks(now)
        oks = self._oks
        # While throttled, a quota lets requests through at its refill rate: the spacing of the
        # OK requests' send times measures it at once, where the OKs of the last WINDOW are still
        # diluted by the time before the 429s, or inflated by the quota's burst credit.
        last_second = len(oks) / WINDOW
        spacing = None if self._episode is None else self._episode.rate()
        if spacing is None:
            return last_second
        # A gap or two is noisy (send times are quantised by the client's own pacing): then the
        # last second's OKs are a floor under it.
        return spacing if self._spacing_known() else max(spacing, last_second)

    def _spacing_known(self) -> bool:
        return self._episode is not None and self._episode.known

    def _correct(self, sent: float) -> None:
        """An OK request that was in flight at the last cut: if the episode the cut ended now
        shows, by its spacing, a goodput the cut fell well short of, raise the rate to it (a
        first volley's OKs, all answered before its 429s, made the cut a guess)."""
        episode = self._in_flight
        assert episode is not None
        episode.add(sent)
        spacing = episode.rate()
        if episode.known and spacing is not None and HOLD_GAIN * spacing > self._rate / HOLD_GAIN:
            self._rate = min(HOLD_GAIN * spacing, BETA_MAX * self._cut_from)
            self._in_flight = None

    def _cut(self, now: float) -> None:
        sent = self._rate or self._meter.rate(now)
        new_rate = max(self._min_rate, min(BETA_MAX * sent, HOLD_GAIN * self._goodput(now)))
        if self._peak is None:
            self._peak = self._rate
        self._excess_before = self._throttled / len(self._answers) - self.base_share(now)
        # A first volley of requests, answered all at once, says nothing about a rate: with no
        # spacing of OK requests to go by, the cut is a guess (a quota's 10-token burst read as
        # 10 req/s). Then ramp up at once instead of holding, and let the next cut decide.
        young = (not self._spacing_known()
                 and now - self._answers[-MIN_SAMPLES][0] < YOUNG_SPAN)
        self._rate = new_rate
        self._settle_until = now if young else now + SETTLE
        self._hold_until = now if young else now + HOLD
        self._growth = STARTUP_GROWTH if young else GROWTH
        self._answers.clear()
        self._throttled = 0
        self._in_flight, self._episode = self._episode, None
        self._cut_at, self._cut_from = now, sent
        self._judging = not young
        self._judged = self._judged_throttled = 0

    def _judge(self, now: float) -> None:
        self._judging = False
        n = self._judged
        share = self._judged_throttled / n
        base = self.base_share(now)
        excess, before = share - base, self._excess_before
        low, high = INDEPENDENT * before, min(1.0, before / INDEPENDENT)
        # Too few answers to tell: keep the cut (the safe side; the next one will tell).
        if self._telling() and low - _noise(low, n) <= excess <= high + _noise(high, n):
            # Backing off did not lower the share: these 429s are not ours to prevent.
            self._base, self._base_at = share, now
            if self._peak is not None:
                self._rate = self._peak
            self._peak = None
            self._hold_until = now
            self._episode = None
        elif share + _noise(base, n) < base:
            # Backing off lowered the share below the base: the base cannot be higher.
            self._base, self._base_at = share, now

    def _grow(self, now: float) -> None:
        if self._rate == 0 or self._judging or now < self._hold_until:
            return
        self._peak = None
        start = max(self._last_growth, self._hold_until)
        self._last_growth = now
        target = self._rate * math.exp(self._growth * (now - start))
        if self._max_rate:
            target = min(target, self._max_rate)
        else:
            target = min(target, max(self._rate, MAX_RATE_ADJUST_SCALE * self._meter.rate(now)))
        self._rate = target
