"""The rate controller: the rate to send at, moved by the service's answers (OK and 429 only: a
5xx or a timeout says the service is in trouble, not that we are too fast; the outage guard
reads those). `Pace` (``engine/pace.py``) puts it in front of the token bucket
(``batchsms.engine.bucket``), which enforces whatever rate it says.

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
   them -- unless the OKs of the last whole ``WINDOW`` are clearly fewer (``BURST_READ``): a
   window that counts what it admits lets bursts through at our own pace, so the spacing
   read our rate and the window's count is its limit; with fewer gaps, at least the OK
   answers of the last ``WINDOW`` seconds over ``WINDOW``;
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
   A sequential test (Wald's) says so sooner when the evidence is plain: from ``MIN_SAMPLES``
   answers on, once the odds of "at least half the excess is still there" against "the cut
   took the share back to the base" (``OURS_LEFT`` above it) reach 19:1 (``NOT_OURS_LLR``) and
   the share is not worse than before -- ~25 answers for 10% foreign 429s, where the 100 of
   the fixed-size test took 5 s at 20/s.
   Then their share becomes ``p0`` and the rate climbs back as after a guess (rule 4's ramp,
   about a second; not one jump, which overran a quota whose cut had only looked "not ours"). A
   share clearly below ``p0`` lowers ``p0`` to it (a wrong "not ours" is corrected by the next
   cut). A share that clearly *grew* (beyond twice) means the cut was too shallow -- the goodput
   was inflated by a quota's burst credit -- and ends the judgement early, so the next 429 cuts
   again. ``p0`` halves every ``BASE_HALF_LIFE`` seconds, so once the other clients stop it
   fades, and a persisting background is re-learnt by the next cut (a brief dip every minute or
   two).
4. **A cut with nothing to measure by is a guess.** It is not held: the rate grows by
   ``STARTUP_GROWTH`` from it at once, and the next cut, on real spacing, sets it. Such a cut
   has no spacing of OK requests to go by and either the last ``MIN_SAMPLES`` answers came
   within ``YOUNG_SPAN`` (``--rate 0``: the first requests in flight are all answered at once),
   or the run is younger than ``WINDOW`` and OK requests still went through after the first
   429 (`_Goodput.young`: read as a rate, the ~15 OKs of the first 0.13 s at ``--rate 200``
   held the rate at 14.5/s, under a third of a quota of 50/s with a 10-token burst, whenever 20
   answers took a hair more than ``YOUNG_SPAN``). Or the rate in force was not what held the
   sends back all along -- *app-limited*, as BBR says: the bucket did not keep holding sends
   back (`held`) from the oldest answer of the share window on (one request in flight during
   slow start, a slow machine, the end of those within the window; always at ``--rate 0``).
   The goodput measured is then the run's own pace, and 429s that do not depend on our rate
   would pin the run there (seen: ~3/s in slow start, then ~1/s, a 200-line run in minutes).

Each rule is one small piece below, with its own few fields: `_ShareWindow` (rule 1),
`_Goodput` and `_Climb` (rule 2: the measure a cut follows, then the hold and the climb),
`_Judgement` and `_BaseShare` (rule 3), `_CutInFlight` (rule 4: the requests in flight at a
guessed cut, which correct it). `RateController` only composes them: it owns the rate. They
stay in this one module, longer than ~300 lines on purpose: the rules, their constants (each
beside the reason for its value, most of the length) and the pieces applying them are one story.

Time comes from outside (``now``, ``sent_at`` are passed in), so tests drive it exactly.
"""

from __future__ import annotations

import enum
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

BURST_READ = HOLD_GAIN**2
"""A spacing of OK requests above the OKs of the last whole second by more than 1/this read a
window's burst at our own pace, not a quota's refill (`_Goodput.rate`): the same margin by
which the requests in flight at a cut correct it (``TRUST_GAPS``)."""

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

HELD_GAP = 1 / MIN_RATE
"""Seconds without a send held back by the bucket after which it no longer counts as holding
the run back (rule 4, app-limited): at the floor rate sends are this far apart."""

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

OURS_LEFT = EXCESS / 4
"""The 429 share above the base share left after a cut that addressed their cause, as the
sequential test (rule 3) assumes it: a cut lands under the goodput, so about none."""

NOT_OURS_LLR = math.log(19.0)
"""Log-likelihood ratio at which the sequential test calls the 429s "not ours" (odds 19:1):
with 10% rate-independent 429s, ~25-30 answers, against the 100 of the fixed-size test."""

BASE_HALF_LIFE = 60.0
"""Seconds in which the learnt base share halves, so that it fades when the background stops."""


def _noise(share: float, n: int) -> float:
    """``Z`` standard deviations of a share ``share`` measured on ``n`` answers."""
    return Z * math.sqrt(share * (1 - share) / n)


class _ShareWindow:
    """Rule 1: the answers of the last ``WINDOW`` seconds (at least the last ``MIN_SAMPLES``),
    and how many of them were 429s."""

    __slots__ = ("answers", "throttled")

    def __init__(self) -> None:
        self.answers: deque[tuple[float, bool]] = deque()  # (time, throttled)
        self.throttled = 0

    def add(self, now: float, throttled: bool) -> None:
        answers = self.answers
        answers.append((now, throttled))
        self.throttled += throttled
        horizon = now - WINDOW
        while len(answers) > MIN_SAMPLES and answers[0][0] < horizon:
            self.throttled -= answers.popleft()[1]

    def excess(self, p0: float) -> bool:
        """The 429 share is significantly above the base share ``p0``."""
        n = len(self.answers)
        if n < MIN_SAMPLES:
            return False
        return self.throttled - n * p0 > n * EXCESS + Z * math.sqrt(n * p0 * (1 - p0))

    def share(self) -> float:
        return self.throttled / len(self.answers)

    def volley(self, now: float) -> bool:
        """Rule 4: the last ``MIN_SAMPLES`` answers came within ``YOUNG_SPAN``, all at once."""
        return now - self.answers[-MIN_SAMPLES][0] < YOUNG_SPAN

    def clear(self) -> None:
        self.answers.clear()
        self.throttled = 0


class _BaseShare:
    """Rule 3's lesson: the share of 429s that do not depend on our rate, fading with time."""

    __slots__ = ("at", "share")

    def __init__(self) -> None:
        self.share = 0.0
        self.at = 0.0

    def now(self, now: float) -> float:
        """The learnt share, faded to ``now``."""
        return self.share * math.pow(0.5, max(0.0, now - self.at) / BASE_HALF_LIFE)

    def learn(self, share: float, now: float) -> None:
        self.share, self.at = share, now


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


class _Goodput:
    """Rule 2's measure: the OK answers of the last ``WINDOW``, and the spacing of the OK
    requests since the first fresh 429 of the current episode (None before it)."""

    __slots__ = ("episode", "first_ok", "last_throttle_sent", "oks")

    def __init__(self) -> None:
        self.oks: deque[float] = deque()
        self.first_ok = math.inf
        self.episode: _Spacing | None = None
        self.last_throttle_sent = -math.inf

    def on_ok(self, now: float, sent: float) -> None:
        oks = self.oks
        oks.append(now)
        self.first_ok = min(self.first_ok, now)
        if oks[0] < now - WINDOW:  # only the last WINDOW is read (`rate`): memory stays flat
            self._drop_old(now)
        if self.episode is not None:
            self.episode.add(sent)

    def on_throttle(self, sent: float) -> None:
        # An episode is 429s no more than EPISODE_GAP apart: a stray 429 long before the quota
        # was reached must not dilute the spacing with the OKs of a slower rate.
        if self.episode is None or sent - self.last_throttle_sent > EPISODE_GAP:
            self.episode = _Spacing(sent)
        self.last_throttle_sent = sent

    def _drop_old(self, now: float) -> None:
        oks = self.oks
        horizon = now - WINDOW
        while oks and oks[0] < horizon:
            oks.popleft()

    def rate(self, now: float) -> float:
        self._drop_old(now)
        # While throttled, a quota lets requests through at its refill rate: the spacing of the
        # OK requests' send times measures it at once, where the OKs of the last WINDOW are still
        # diluted by the time before the 429s, or inflated by the quota's burst credit.
        last_second = len(self.oks) / WINDOW
        spacing = None if self.episode is None else self.episode.rate()
        if spacing is None:
            return last_second
        # A gap or two is noisy (send times are quantised by the client's own pacing): then the
        # last second's OKs are a floor under it.
        if not self.spacing_known():
            return max(spacing, last_second)
        # A window that counts the requests it admits (the simulator's --throttle-rate) lets
        # them through in bursts at our own pace, so a spacing over less than a window reads
        # our rate, not its limit (seen: 41/s against 20/s, then 50% 429s learnt as "not
        # ours"). A token bucket cannot do that: over a whole window of sending it lets at
        # least its refill through. So when the OKs of a whole window are clearly fewer than
        # the spacing says, they are the limit.
        if now - self.first_ok >= WINDOW and last_second < BURST_READ * spacing:
            return last_second
        return spacing

    def young(self, now: float, first_send: float | None) -> bool:
        """The first request left less than ``WINDOW`` ago, and OK requests still went through
        after the first 429: the last second's OKs are less than a second's worth of a limit
        that lets more through (a quota's burst, then its refill). A window that counts every
        arrival lets none through once full, and is measured right by them."""
        return (first_send is not None and now - first_send < WINDOW
                and self.episode is not None and self.episode.count > 0)

    def spacing_known(self) -> bool:
        return self.episode is not None and self.episode.known

    def end_episode(self) -> _Spacing | None:
        """A cut ends the episode; it is handed on, still fed by the requests in flight."""
        episode, self.episode = self.episode, None
        return episode


class _Climb:
    """Rule 2's second half: after a cut the rate holds until ``until``, then grows by
    ``growth`` per second, compounded (``STARTUP_GROWTH`` after a guessed cut, rule 4)."""

    __slots__ = ("growth", "last", "until")

    def __init__(self) -> None:
        self.until = -math.inf
        self.last = -math.inf  # the last growth step
        self.growth = GROWTH

    def hold(self, now: float, *, guess: bool) -> None:
        self.until = now if guess else now + HOLD
        self.growth = STARTUP_GROWTH if guess else GROWTH

    def grown(self, rate: float, now: float) -> float:
        """``rate`` grown from the last step (or the end of the hold) to ``now``."""
        start = max(self.last, self.until)
        self.last = now
        return rate * math.exp(self.growth * (now - start))


class _Verdict(enum.Enum):
    """What the answers after a cut said of it (rule 3)."""

    PENDING = "pending"  # not yet judged
    STANDS = "stands"  # the cut helped, or the answers cannot tell: it stays
    NOT_OURS = "not_ours"  # the share did not move: the 429s do not come from our rate
    BELOW_BASE = "below_base"  # the share fell below the base share: the base cannot be higher


class _Judgement:
    """Rule 3: the answers to requests sent ``SETTLE`` seconds after a cut judge it."""

    __slots__ = ("active", "excess_before", "llr", "llr_ok", "llr_throttled", "n",
                 "settle_until", "throttled")

    def __init__(self) -> None:
        self.settle_until = -math.inf
        self.active = False
        self.excess_before = 0.0  # the excess 429 share before the cut
        self.n = 0
        self.throttled = 0
        # The sequential test (`add`): log-likelihood ratio "not ours" : "ours" so far, and
        # what a 429 and an OK add to it.
        self.llr = self.llr_throttled = self.llr_ok = 0.0

    def start(self, now: float, excess_before: float, base: float, *, guess: bool) -> None:
        """A cut at ``now``; a guessed one (rule 4) is not judged, nor settled."""
        self.settle_until = now if guess else now + SETTLE
        self.active = not guess
        self.excess_before = excess_before
        self.n = self.throttled = 0
        # "Ours": the cut took the 429s back to about the base share. "Not ours": at least
        # INDEPENDENT of the excess before it is still there.
        ours, not_ours = base + OURS_LEFT, min(0.99, base + INDEPENDENT * excess_before)
        self.llr = 0.0
        if not_ours > ours:
            self.llr_throttled = math.log(not_ours / ours)
            self.llr_ok = math.log((1 - not_ours) / (1 - ours))
        else:
            self.llr_throttled = self.llr_ok = 0.0

    def add(self, now: float, throttled: bool, base: _BaseShare) -> _Verdict:
        """One answer since the cut (``active`` only)."""
        self.n += 1
        self.throttled += throttled
        # Wald's sequential test, for a verdict "not ours" in as few answers as the evidence
        # allows: at 20 req/s, 100 answers (below) take 5 s of a needless cut.
        self.llr += self.llr_throttled if throttled else self.llr_ok
        waited = now - self.settle_until >= EXP_MAX
        if (self.n >= EXP_SAMPLES and (self._telling() or waited)) or (
                self.n >= MIN_SAMPLES and waited):
            return self._verdict(now, base)
        if self.n >= MIN_SAMPLES:
            if self._worse(base.now(now)):
                self.active = False  # the cut was not deep enough: the next 429 cuts again
            elif self.llr >= NOT_OURS_LLR and not self._above_before(base.now(now)):
                self.active = False
                base.learn(self.throttled / self.n, now)
                return _Verdict.NOT_OURS
        return _Verdict.PENDING

    def _telling(self) -> bool:
        """Enough answers since the cut to tell a share of half the excess before it from 0."""
        low = INDEPENDENT * self.excess_before
        return low - _noise(low, self.n) > 0

    def _above_before(self, base: float) -> bool:
        """Since the cut the excess share is clearly above what it was before: not the same
        429s (a cut too shallow for a quota; "not ours" would learn them as the base)."""
        n, before = self.n, self.excess_before
        return self.throttled / n - base > before + _noise(before, n)

    def _worse(self, base: float) -> bool:
        """Since the cut the excess share is clearly above what it was before it."""
        n, high = self.n, min(1.0, self.excess_before / INDEPENDENT)
        return self.throttled / n - base > high + _noise(high, n)

    def _verdict(self, now: float, base_share: _BaseShare) -> _Verdict:
        self.active = False
        n = self.n
        share = self.throttled / n
        base = base_share.now(now)
        excess, before = share - base, self.excess_before
        low, high = INDEPENDENT * before, min(1.0, before / INDEPENDENT)
        # Too few answers to tell: keep the cut (the safe side; the next one will tell).
        if self._telling() and low - _noise(low, n) <= excess <= high + _noise(high, n):
            base_share.learn(share, now)
            return _Verdict.NOT_OURS
        if share + _noise(base, n) < base:
            base_share.learn(share, now)
            return _Verdict.BELOW_BASE
        return _Verdict.STANDS


class _CutInFlight:
    """Rule 4's correction: the episode a cut ended, still fed by the OK requests in flight at
    the cut (sent by ``at``), and the rate the cut was made from."""

    __slots__ = ("at", "episode", "sent_rate")

    def __init__(self, episode: _Spacing, at: float, sent_rate: float) -> None:
        self.episode = episode
        self.at = at
        self.sent_rate = sent_rate

    def corrected(self, sent: float, rate: float) -> float | None:
        """One more OK request of the episode: the rate the cut should have set, if its spacing
        now shows a goodput the cut fell well short of; else None."""
        episode = self.episode
        episode.add(sent)
        spacing = episode.rate()
        if episode.known and spacing is not None and BURST_READ * spacing > rate:
            return min(HOLD_GAIN * spacing, BETA_MAX * self.sent_rate)
        return None


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
        self._window = _ShareWindow()
        self._base = _BaseShare()
        self._goodput = _Goodput()
        self._climb = _Climb()
        self._judgement = _Judgement()
        self._cut_in_flight: _CutInFlight | None = None
        # When the bucket last held a send back (`held`), and since when it has without a gap.
        self._held_at = self._held_since = -math.inf

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
        return self._base.now(now)

    def held(self, now: float) -> None:
        """The bucket held a send back at ``now``: the rate in force is what limits the run."""
        if now - self._held_at > HELD_GAP:
            self._held_since = now
        self._held_at = now

    def _held_before(self, start: float, now: float) -> bool:
        """The bucket has held sends back since ``start`` up to ``now``, without a gap."""
        return self._held_since <= start and now - self._held_at <= HELD_GAP

    def on_success(self, now: float, sent_at: float | None = None) -> float:
        """A request sent at ``sent_at`` succeeded. Returns the rate now in force."""
        sent = now if sent_at is None else sent_at
        self._goodput.on_ok(now, sent)
        cut = self._cut_in_flight
        if cut is not None and sent <= cut.at:
            corrected = cut.corrected(sent, self._rate)
            if corrected is not None:
                self._rate = corrected
                self._cut_in_flight = None
        if self._record(now, sent_at, throttled=False) and self._rate:  # 0: nothing to grow
            self._grow(now)
        return self._rate

    def on_throttle(self, now: float, sent_at: float | None = None) -> float:
        """A request sent at ``sent_at`` got HTTP 429. Returns the rate now in force.

        A caller that cannot tell ``sent_at`` passes None: the answer then counts as fresh.
        """
        if not self._record(now, sent_at, throttled=True):
            return self._rate
        self._goodput.on_throttle(now if sent_at is None else sent_at)
        if not self._judgement.active and self._window.excess(self._base.now(now)):
            self._cut(now)
        return self._rate

    def _record(self, now: float, sent_at: float | None, *, throttled: bool) -> bool:
        """Add one answer to the share window (and to the judgement of the last cut); False if
        it answers a rate already given up."""
        judgement = self._judgement
        if sent_at is not None and sent_at <= judgement.settle_until:
            return False
        self._window.add(now, throttled)
        if judgement.active:
            verdict = judgement.add(now, throttled, self._base)
            if verdict is _Verdict.NOT_OURS:  # backing off did not lower the share
                # Back up as after a guess (rule 4's ramp), not in one jump to the rate before
                # the cuts: a cut on a quota's burst-inflated goodput can look "not ours" too,
                # and a jump back to --rate 200 overran a 50/s quota at once (13% of 429s in
                # one bench run). Foreign 429s cost the ramp a second at most.
                self._climb.hold(now, guess=True)
                self._goodput.episode = None
        return True

    def _cut(self, now: float) -> None:
        """Rule 2: to just under the goodput, at most ``BETA_MAX`` times the rate sent at."""
        sent = self._rate or self._meter.rate(now)
        new_rate = max(self._min_rate, min(BETA_MAX * sent, HOLD_GAIN * self._goodput.rate(now)))
        window = self._window
        excess_before = window.share() - self._base.now(now)
        # Rule 4: a first volley of requests, answered all at once, says nothing about a rate:
        # with no spacing of OK requests to go by, the cut is a guess (a quota's 10-token burst
        # read as 10 req/s). Then ramp up at once instead of holding, and let the next cut decide.
        # So is a cut while the rate was not what held the sends back (app-limited, as BBR says:
        # slow start, or a slow machine, sending at a fraction of it): the goodput measured then
        # is our own pace, not the service's limit, and holding it would pin the run there.
        # With --rate 0 there was no rate in force at all: the first cut is a guess too.
        goodput = self._goodput
        guess = not self._rate or (not goodput.spacing_known() and (
            window.volley(now) or goodput.young(now, self._meter.first_send))) \
            or not self._held_before(window.answers[0][0], now)
        self._rate = new_rate
        self._judgement.start(now, excess_before, self._base.now(now), guess=guess)
        self._climb.hold(now, guess=guess)
        window.clear()
        episode = self._goodput.end_episode()
        self._cut_in_flight = None if episode is None else _CutInFlight(episode, now, sent)

    def _grow(self, now: float) -> None:
        if self._rate == 0 or self._judgement.active or now < self._climb.until:
            return
        target = self._climb.grown(self._rate, now)
        if self._max_rate:
            target = min(target, self._max_rate)
        else:
            target = min(target, max(self._rate, MAX_RATE_ADJUST_SCALE * self._meter.rate(now)))
        self._rate = target
