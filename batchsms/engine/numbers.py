"""The numeric options' checks, shared by every command that has them: a finite number in its
range, else one `UsageError` naming the option (exit 2).

`float()` takes `nan`, `inf` and `1e400` (= inf), and NaN passes every `<` test written as a
refusal; so each value is checked here as accepted, never as refused.
"""

from __future__ import annotations

import math

from batchsms.errors import UsageError


def check_number(option: str, value: float, accepted: bool, wanted: str) -> None:
    """`UsageError` unless `value` is a finite number and `accepted` (its range check, which
    NaN fails anyway): "--rate must be 0 (unlimited) or more, got nan"."""
    if not (math.isfinite(value) and accepted):
        raise UsageError(f"{option} must be {wanted}, got {value:g}")


def check_sending(rate: float, max_attempts: int, timeout: float) -> None:
    """The options every command that sends shares (`run`, `plan`, `tasks`)."""
    check_number("--rate", rate, rate >= 0, "0 (unlimited) or more")
    if max_attempts < 1:
        raise UsageError(f"--max-attempts must be at least 1, got {max_attempts}")
    check_number("--timeout", timeout, timeout > 0, "more than 0 (seconds)")
