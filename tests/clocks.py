"""The one fake clock of the tests: time moves only when a test says so or someone sleeps.

`FakeClock(now)` is what batchsms takes as a clock (call it for the time) and as a sleep
(`clock.sleep`). `now` is the time, readable and settable; `advance(seconds)` moves it;
`await sleep(seconds)` records the wait in `sleeps`, moves the time by exactly that much and
yields once, refusing a negative wait as `anyio.sleep` does. `tick` (0 by default) is time that
passes at each reading, as on a loaded machine.
"""

from __future__ import annotations

import anyio.lowlevel


class FakeClock:
    """A clock that moves only when told, or by the waits of those who sleep on it."""

    def __init__(self, now: float = 0.0, *, tick: float = 0.0) -> None:
        self.now = now
        self.tick = tick
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        now = self.now
        self.now += self.tick
        return now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        if seconds < 0:  # anyio.sleep's own check
            raise ValueError("delay must be a non-negative number")
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()
