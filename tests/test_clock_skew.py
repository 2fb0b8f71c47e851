"""Clock skew learnt from the service's Date header, and date-rejected 401s, at fixed times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchsms.transport.clock import (
    ClockSkew,
    Rejection,
    classify_401,
    is_date_rejection,
    parse_http_date,
)
from tests.clocks import FakeClock

NOON = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
NOON_HTTP = "Sat, 05 Dec 2026 12:00:00 GMT"


def test_parse_http_date() -> None:
    assert parse_http_date(NOON_HTTP) == NOON
    assert parse_http_date("Sat, 05 Dec 2026 12:00:00 -0000") == NOON
    for bad in (None, "", "garbage", "Sat, 99 Dec 2026 12:00:00 GMT", "\x00\x01"):
        assert parse_http_date(bad) is None


@pytest.mark.parametrize("ahead", [20 * 60, -20 * 60])
def test_a_clock_20_minutes_off_is_corrected_and_warned_once(ahead: int) -> None:
    clock = FakeClock(NOON.timestamp() + ahead)
    warnings: list[float] = []
    skew = ClockSkew(clock, warnings.append)
    assert skew.learn(NOON_HTTP) == -ahead
    assert skew.offset == -ahead
    assert skew.now() == NOON
    skew.learn(NOON_HTTP)
    assert warnings == [-ahead]
    assert f"{-ahead:+d} s" in repr(skew)


def test_under_a_minute_is_left_alone() -> None:
    clock = FakeClock(NOON.timestamp() + 59.5)
    warnings: list[float] = []
    skew = ClockSkew(clock, warnings.append)
    assert skew.learn(NOON_HTTP) == -59.5
    assert skew.offset == 0
    assert skew.now() == datetime.fromtimestamp(clock.now, UTC)
    assert warnings == []


def test_missing_or_garbage_date_teaches_nothing() -> None:
    clock = FakeClock(NOON.timestamp() + 3600)
    skew = ClockSkew(clock)
    skew.learn(NOON_HTTP)
    for bad in (None, "", "yesterday"):
        assert skew.learn(bad) is None
    assert skew.offset == -3600  # kept from the last good answer


def test_a_repeated_date_is_measured_against_each_arrival() -> None:
    """The parse of a Date seen before is reused; the offset is still taken at each answer."""
    skew = ClockSkew(FakeClock(0.0))
    assert skew.learn(NOON_HTTP, received_at=NOON.timestamp() - 120) == 120
    assert skew.learn(NOON_HTTP, received_at=NOON.timestamp() - 90) == 90
    assert skew.learn("garbage", received_at=0.0) is None
    assert skew.learn(NOON_HTTP, received_at=NOON.timestamp() + 0.5) == -0.5
    assert skew.learn("Sat, 05 Dec 2026 12:00:01 GMT", received_at=NOON.timestamp()) == 1


def test_received_at_is_used_when_given() -> None:
    skew = ClockSkew(FakeClock(0.0))
    assert skew.learn(NOON_HTTP, received_at=NOON.timestamp() - 120) == 120


def test_is_date_rejection() -> None:
    assert is_date_rejection(401, "20261205T114459Z", NOON_HTTP)  # 15 min 1 s early
    assert is_date_rejection(401, "20261205T121501Z", NOON_HTTP)  # 15 min 1 s late
    assert not is_date_rejection(401, "20261205T114500Z", NOON_HTTP)  # exactly 15 min: ok
    assert not is_date_rejection(401, "20261205T120000Z", NOON_HTTP)  # a real key problem
    assert not is_date_rejection(403, "20261205T100000Z", NOON_HTTP)
    assert not is_date_rejection(401, None, NOON_HTTP)  # a token: no date was signed
    assert not is_date_rejection(401, "20261205T100000Z", None)
    assert not is_date_rejection(401, "20261205T100000Z", "garbage")
    assert not is_date_rejection(401, "garbage", NOON_HTTP)


def test_classify_401() -> None:
    late = "20261205T100000Z"
    on_time = "20261205T120000Z"
    assert classify_401(late, NOON_HTTP, temporary=False, retried=False) is Rejection.DATE
    assert classify_401(late, NOON_HTTP, temporary=True, retried=False) is Rejection.DATE
    assert classify_401(on_time, NOON_HTTP, temporary=True, retried=False) is Rejection.STALE
    assert classify_401(on_time, NOON_HTTP, temporary=False, retried=False) is Rejection.KEY
    assert classify_401(None, None, temporary=False, retried=False) is Rejection.KEY
    assert classify_401(late, NOON_HTTP, temporary=True, retried=True) is Rejection.KEY


def test_corrected_time_for_the_refresher() -> None:
    clock = FakeClock(NOON.timestamp() - 20 * 60)
    skew = ClockSkew(clock)
    skew.learn(NOON_HTTP)
    assert skew.service_time() == NOON.timestamp()
