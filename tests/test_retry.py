"""What is retried, the backoff sequence, Retry-After and the decision."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchsms.engine.retry import (
    MAX_RETRY_AFTER,
    RETRYABLE_STATUSES,
    Decision,
    Reason,
    RetryPolicy,
    backoff_delay,
    decide,
    is_retryable,
    parse_retry_after,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def one() -> float:
    return 1.0


def half() -> float:
    return 0.5


# --- is_retryable --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "transport_error", "expected"),
    [
        (429, False, True),
        (500, False, True),
        (502, False, True),
        (503, False, True),
        (504, False, True),
        (None, True, True),
        (503, True, True),
        (400, False, False),
        (401, False, False),
        (403, False, False),
        (404, False, False),
        (409, False, False),
        (501, False, False),
        (200, False, False),
        (None, False, False),
    ],
)
def test_is_retryable_table(status: int | None, transport_error: bool, expected: bool) -> None:
    """Transport errors and 429/500/502/503/504 are retried; nothing else."""
    assert is_retryable(status, transport_error) is expected


def test_retryable_statuses_are_the_contract_ones() -> None:
    """The set is exactly §5's."""
    assert frozenset({429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


# --- backoff_delay -------------------------------------------------------------------------


def test_backoff_exact_sequence_without_jitter() -> None:
    """random=1 gives the bare exponential, capped at 20 s."""
    delays = [backoff_delay(n, random=one) for n in range(1, 9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 20, 20]


def test_backoff_half_jitter_halves_the_sequence() -> None:
    """random=0.5 gives exactly half of each step."""
    delays = [backoff_delay(n, random=half) for n in range(1, 9)]
    assert delays == [0.25, 0.5, 1, 2, 4, 8, 10, 10]


def test_backoff_custom_base_and_cap() -> None:
    """base and cap shape the curve."""
    delays = [backoff_delay(n, base=1.0, cap=5.0, random=one) for n in range(1, 6)]
    assert delays == [1, 2, 4, 5, 5]


@pytest.mark.parametrize("attempt", [64, 1_000, 10**6, 10**18])
def test_backoff_huge_attempt_numbers_stay_at_cap(attempt: int) -> None:
    """No overflow, however many attempts."""
    assert backoff_delay(attempt, random=one) == 20.0


@given(attempt=st.integers(min_value=1, max_value=10**9), r=st.floats(0, 1))
def test_backoff_never_exceeds_cap_nor_goes_negative(attempt: int, r: float) -> None:
    """Any attempt, any jitter: 0 <= delay <= cap."""
    assert 0.0 <= backoff_delay(attempt, random=lambda: r) <= 20.0


def test_backoff_clamps_misbehaving_randomness() -> None:
    """A random() outside [0, 1] cannot push the delay past its ceiling or below zero."""
    assert backoff_delay(3, random=lambda: 7.0) == 2.0
    assert backoff_delay(3, random=lambda: -1.0) == 0.0


def test_backoff_attempt_is_one_based() -> None:
    """Attempt 0 is a programming error."""
    with pytest.raises(ValueError):
        backoff_delay(0, random=one)


# --- parse_retry_after ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("299.75", 299.75),
        ("86400", MAX_RETRY_AFTER),
        ("9" * 400, MAX_RETRY_AFTER),
    ],
)
def test_retry_after_seconds(value: str, expected: float) -> None:
    """delay-seconds, decimals accepted, clamped to MAX_RETRY_AFTER."""
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "  ", "-5", "+5", "-0.5", "soon", "1e3", "nan", "inf", "1.", ".5", "٣", "5 s"],
)
def test_retry_after_garbage_is_none(value: str | None) -> None:
    """Absent, negative or unparseable values are ignored."""
    assert parse_retry_after(value, NOW) is None


@given(value=st.text(max_size=60))
def test_retry_after_never_raises(value: str) -> None:
    """Any header text gives None or a delay within [0, MAX_RETRY_AFTER]."""
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER


def test_retry_after_http_date_in_the_future() -> None:
    """An HTTP-date counts from now."""
    value = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(value, NOW) == 42.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    """A date already gone means "retry now"."""
    value = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(value, NOW) == 0.0


def test_retry_after_http_date_far_future_is_capped() -> None:
    """A date a day away is clamped to MAX_RETRY_AFTER."""
    value = format_datetime(NOW + timedelta(days=1), usegmt=True)
    assert parse_retry_after(value, NOW) == MAX_RETRY_AFTER


def test_retry_after_http_date_other_zone_and_naive_now() -> None:
    """Zones are respected; a naive now and a -0000 date are both read as UTC."""
    assert parse_retry_after("Wed, 01 May 2024 14:00:10 +0200", NOW) == 10.0
    naive_now = NOW.replace(tzinfo=None)
    assert parse_retry_after("Wed, 01 May 2024 12:00:05 -0000", naive_now) == 5.0
    plus_one = NOW.astimezone(timezone(timedelta(hours=1)))
    assert parse_retry_after("Wed, 01 May 2024 12:00:05 GMT", plus_one) == 5.0


# --- RetryPolicy and decide ----------------------------------------------------------------


def test_policy_defaults_match_the_cli() -> None:
    """5 attempts, base 0.5 s, cap 20 s."""
    assert RetryPolicy() == RetryPolicy(max_attempts=5, base=0.5, cap=20.0)


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base": -1.0}, {"cap": float("inf")}])
def test_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    """Checked in __post_init__."""
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_decide_retries_a_503_with_backoff() -> None:
    """A retryable status within attempts: retry after the backoff."""
    decision = decide(RetryPolicy(), 3, 503, False, None, one)
    assert decision == Decision(retry=True, delay=2.0, reason=Reason.RETRY)


def test_decide_retries_a_transport_error() -> None:
    """A connection error or timeout is retried."""
    assert decide(RetryPolicy(), 1, None, True, None, one).retry


def test_decide_not_retryable() -> None:
    """A 400 is final."""
    decision = decide(RetryPolicy(), 1, 400, False, None, one)
    assert decision == Decision(retry=False, delay=0.0, reason=Reason.NOT_RETRYABLE)


def test_decide_stops_at_max_attempts() -> None:
    """Attempt 5 of 5 failing is final."""
    assert decide(RetryPolicy(), 4, 500, False, None, one).retry
    decision = decide(RetryPolicy(), 5, 500, False, None, one)
    assert decision.reason is Reason.MAX_ATTEMPTS
    assert not decision.retry


def test_decide_single_attempt_policy_never_retries() -> None:
    """--max-attempts 1 means no retry at all."""
    decision = decide(RetryPolicy(max_attempts=1), 1, 429, False, None, one)
    assert decision.reason is Reason.MAX_ATTEMPTS


def test_decide_tries_that_never_left_do_not_use_attempts() -> None:
    """Zero requests sent after three refused connections: still retried, backoff at step 3."""
    decision = decide(RetryPolicy(max_attempts=1), 0, None, True, None, one, step=3)
    assert decision == Decision(retry=True, delay=2.0, reason=Reason.RETRY)


def test_decide_has_no_retry_quota() -> None:
    """Hundreds of retries in a row are all allowed: no absolute pot runs dry (issue 9)."""
    assert all(decide(RetryPolicy(), 1, 503, True, None, one).retry for _ in range(1000))
    assert not hasattr(importlib.import_module("batchsms.engine.retry"), "RetryQuota")


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, None, 0.5),
        (1, 3.0, 3.0),  # the header asks for longer: honoured
        (4, 3.0, 4.0),  # the backoff is longer already
        (7, 0.0, 20.0),
        (2, MAX_RETRY_AFTER, MAX_RETRY_AFTER),
    ],
)
def test_decide_delay_is_max_of_backoff_and_retry_after(
    attempt: int, retry_after: float | None, expected: float
) -> None:
    """Retry-After is a lower bound on the jittered backoff."""
    policy = RetryPolicy(max_attempts=10)
    decision = decide(policy, attempt, 429, False, retry_after, one)
    assert decision.delay == expected


def test_decide_retry_after_lifts_jittered_delay() -> None:
    """With jitter drawing 0, Retry-After alone sets the wait."""
    decision = decide(RetryPolicy(), 2, 429, False, 1.25, lambda: 0.0)
    assert decision.delay == 1.25


def test_decision_is_frozen() -> None:
    """Decisions are values."""
    decision = Decision(retry=True, delay=1.0, reason=Reason.RETRY)
    with pytest.raises(AttributeError):
        decision.retry = False  # type: ignore[misc]
