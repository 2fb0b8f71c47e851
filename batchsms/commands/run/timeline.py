"""`run --timeline FILE`: one JSON object per second of the run, the picture of what the engine
did and why (issue 23; docs/reference.md §9).

Each object: `t` (seconds since the run started), `at` (UTC), and for that second `sent`
(requests counted: answered, or left without a readable answer), the answers by class (`2xx`,
`429`, `4xx` other than 429, `5xx`, `other`), `no_answer` (sent, no HTTP answer), then the state
at its end: `in_flight`, `rate` (the pace in force, requests/s; 0 = unlimited) and `outage`
(only probes go). Fed from the sender's own counters (RunStats, its pace and gate), read once a
second: nothing is added to the path of a request.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import anyio
import orjson

from batchsms.engine.sender import Sender

INTERVAL = 1.0


def _classes(by_http: Counter[int]) -> Counter[str]:
    out: Counter[str] = Counter()
    for status, n in by_http.items():
        if status == 429:
            out["429"] += n
        elif 200 <= status < 600:
            out[f"{status // 100}xx"] += n
        else:
            out["other"] += n
    return out


class Timeline:
    """Samples `sender` into `sink`, one line per `tick()`."""

    def __init__(self, sender: Sender, sink: IO[bytes]) -> None:
        self._sender = sender
        self._sink = sink
        self._started = time.monotonic()
        self._requests = 0
        self._answers: Counter[str] = Counter()

    def tick(self) -> None:
        sender = self._sender
        stats = sender.stats
        answers = _classes(stats.by_http)
        sent = stats.requests - self._requests
        answered = answers - self._answers
        self._requests, self._answers = stats.requests, answers
        record = {
            "t": round(time.monotonic() - self._started, 3),
            "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "sent": sent, **{k: answered.get(k, 0) for k in ("2xx", "429", "4xx", "5xx")},
            "other": answered.get("other", 0), "no_answer": max(0, sent - answered.total()),
            "in_flight": sender.in_flight, "rate": sender.pace.current_rate,
            "outage": sender.in_outage}
        self._sink.write(orjson.dumps(record) + b"\n")
        self._sink.flush()

    async def record(self) -> None:
        """A line every second until cancelled, and one at the end."""
        try:
            while True:
                await anyio.sleep(INTERVAL)
                self.tick()
        finally:
            self.tick()


def open_timeline(path: Path) -> IO[bytes]:
    """The timeline file, truncated: it pictures one run."""
    return path.open("wb")
