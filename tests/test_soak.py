"""Soak under faults: 20 000 lines through the simulator with every fault on at once.

One `batchsms run` subprocess drives a simulator served from a thread of this process, so the
simulator's live counters and its request log can be compared with the outcomes file. The
faults change in phases, keyed on the number of requests the simulator has received (not on
time, so a slow machine meets the same sequence):

    base       5xx (fail_rate), resets, latency 0-25 ms, a few hung requests (1.5 s > --timeout 1)
    storm-ra   base + 429 above 150 req/s, with Retry-After: 1
    storm      base + 429 above 60 req/s, without Retry-After
    spike      base with latency 100-500 ms
    base       to the end

Every phase has its own seed, so the fault sequence of each phase is reproducible.

Invariants (CONTRACT §3, §5, §10):
- exactly one outcome per input line, each a complete §3 record;
- `succeeded` only where the server applied that very update: the record's `request_id` is the
  server's answer 200 to a PUT of that task with that body, and the task's `applied` >= 1;
  (a `failed` line may still have been applied: a hung request the client gave up on is served
  late by the simulator, as a slow backend would, so only "succeeded => applied" is asserted);
- `attempts` is what the server received: per line (counted in the request log by task and body
  bytes) and per task (the simulator's counters);
- no line made more than `--max-attempts` attempts;
- lines of the same task reached the server in file order, never interleaved;
- the token bucket's bound held at the server: in every window of t seconds (t = 1 s and
  0.2 s, sliding over every arrival) at most `rate*t + burst + slack` requests arrived (slack:
  see `check_bucket`); checked in the soak (rate 600, near what the machine can do) and in a
  shorter run at rate 100 where a third of the attempts are retries.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import re
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.simulator.app import Received
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.threaded import SimThread, simulator_thread
from tests.processes import batchsms

pytestmark = pytest.mark.slow

N_LINES = 20_000
N_TASKS = 16_000  # lines i and i + N_TASKS share a task: 4 000 tasks get two lines, in order
RATE, BURST = 600, 40
CONCURRENCY, MAX_ATTEMPTS, TIMEOUT_S = 32, 6, 1
SEED = 20_261_127

# Arrival times are stamped when the simulator's loop gets to a request, not when the client's
# bucket released it: while that loop is busy or descheduled, arrivals queue up and are stamped
# together. `LoopLag` measures the longest such stall during the run; the bound is checked with
# a slack of 2 requests plus RATE times (that stall + 20 ms of transport jitter).
TRANSPORT_JITTER_S = 0.02

BASE = FaultConfig(fail_rate=0.1, reset_rate=0.02, hang_rate=0.0005, hang_ms=1500.0,
                   latency_ms=(0.0, 25.0))
# A storm's excess 429s cut the client's rate to just under its goodput, where it holds for 10 s
# before probing back up (+5%/s; engine/controller.py): the storms are kept short and back to
# back, and the latency spike follows them while the rate is still held, to keep the soak near a
# minute.
PHASES: list[tuple[int, str, FaultConfig]] = [  # (from the n-th request received, name, faults)
    (0, "base", replace(BASE, seed=SEED)),
    (2_000, "storm-ra", replace(BASE, seed=SEED + 1, throttle_rate=150, retry_after=1.0)),
    (2_400, "storm", replace(BASE, seed=SEED + 2, throttle_rate=60)),
    (2_800, "spike", replace(BASE, seed=SEED + 3, latency_ms=(100.0, 500.0))),
    (3_400, "base", replace(BASE, seed=SEED + 4)),
]

FIELDS = ("run_id", "line", "task_id", "op", "ref", "status", "http_status", "attempts",
          "error_code", "error_msg", "errors", "request_id", "body_sha256", "elapsed_ms",
          "finished_at", "maybe_applied")
FINISHED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# What a line may fail with here: injected 5xx, throttling, resets, timeouts.
FAULT_CODES = {"SMS.9999", "APIG.0201", "SMS.9998", "APIG.0202", "APIG.0308", "timeout",
               "connection"}


def line_of(i: int) -> dict[str, Any]:
    """Input line i (0-based): a unique body per line, tasks shared by lines i and i+N_TASKS."""
    return {"task_id": f"soak-{i % N_TASKS}", "ref": f"r{i}",
            "body": {"speed_limit": i % 1001, "name": f"soak-{i}"}}


def canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class PhaseController(threading.Thread):
    """Switches the simulator's faults as the received count passes each phase's start."""

    def __init__(self, sim: SimThread) -> None:
        super().__init__(daemon=True)
        self.sim = sim
        self.done = threading.Event()
        # (phase, requests received at the switch, answers by status so far)
        self.entered: list[tuple[str, int, Counter[int]]] = []

    def run(self) -> None:
        stats = self.sim.handle.stats
        for start, name, faults in PHASES[1:]:
            while stats.received < start:
                if self.done.wait(0.005):
                    return
            answers = self.sim.call(functools.partial(self._switch, faults))
            self.entered.append((name, stats.received, answers))

    def _switch(self, faults: FaultConfig) -> Counter[int]:
        self.sim.handle.faults.reconfigure(faults)
        return Counter(self.sim.handle.stats.by_status)

    def answers_during(self, name: str) -> Counter[int]:
        """Answers by status while phase `name` was on (a phase followed by another)."""
        index = [phase for phase, _, _ in self.entered].index(name)
        return self.entered[index + 1][2] - self.entered[index][2]


def max_in_window(times: list[float], width: float) -> int:
    """The most arrivals in any closed window [t, t + width], t an arrival (two pointers)."""
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j + 1 < len(times) and times[j + 1] <= start + width:
            j += 1
        best = max(best, j - i + 1)
    return best


class LoopLag:
    """The longest stall of the simulator's loop: how late a 5 ms sleep on it wakes up."""

    def __init__(self, sim: SimThread) -> None:
        self.max_lag = 0.0
        self._stop = threading.Event()
        self._future = asyncio.run_coroutine_threadsafe(self._watch(), sim.loop)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.005)
            self.max_lag = max(self.max_lag, loop.time() - before - 0.005)

    def stop(self) -> float:
        self._stop.set()
        self._future.result(5)
        return self.max_lag


def check_bucket(arrivals: list[float], rate: float, burst: float, lag: float) -> str:
    """Assert the bucket's bound in sliding windows of 1 s and 0.2 s; a summary line."""
    slack = 2 + math.ceil(rate * (lag + TRANSPORT_JITTER_S))
    summary = []
    for width in (1.0, 0.2):
        bound = rate * width + burst
        seen = max_in_window(arrivals, width)
        assert seen <= bound + slack, \
            f"{seen} arrivals in {width}s: bound {bound:g} + slack {slack} (loop lag {lag:.3f}s)"
        summary.append(f"max/{width:g}s {seen} (bound {bound:g} + {slack})")
    return ", ".join(summary)


def run_batchsms(source: Path, out: Path, stderr: Path, url: str, *args: str) -> int:
    with stderr.open("wb") as err:
        return batchsms(
            "run", str(source), "--endpoint", url, "--out", str(out), "--concurrency",
            str(CONCURRENCY), "--max-attempts", str(MAX_ATTEMPTS), "--timeout", str(TIMEOUT_S),
            "--abort-failure-ratio", "1", "--log-format", "json", "--no-progress", *args,
            env={"BATCHSMS_AUTH_TOKEN": "soak-token"}, stdout=subprocess.DEVNULL, stderr=err,
            timeout=280).returncode


def check_record(record: dict[str, Any], run_id: str) -> None:
    """Every CONTRACT §3 field, with the type and shape it must have."""
    assert tuple(record) == FIELDS, record
    assert record["run_id"] == run_id
    assert isinstance(record["line"], int)
    assert record["status"] in ("succeeded", "failed"), record
    assert isinstance(record["attempts"], int)
    assert record["errors"] == []
    assert isinstance(record["elapsed_ms"], int)
    assert record["elapsed_ms"] >= 0
    assert FINISHED_AT.fullmatch(record["finished_at"]), record["finished_at"]
    assert re.fullmatch(r"[0-9a-f]{64}", record["body_sha256"])
    if record["status"] == "succeeded":
        assert record["http_status"] == 200
        assert record["error_code"] is None
        assert record["error_msg"] is None
        assert isinstance(record["request_id"], str)
    else:
        assert record["error_code"] in FAULT_CODES, record
        assert isinstance(record["error_msg"], str)
        assert record["error_msg"]


def wait_for_log(sim: SimThread, timeout: float = 15.0) -> list[Received]:
    """The request log once every received request has been answered (hung ones included)."""
    handle = sim.handle
    deadline = time.monotonic() + timeout
    while True:
        received, log = sim.call(lambda: (handle.stats.received, list(handle.requests)))
        if len(log) >= received or time.monotonic() > deadline:
            assert len(log) == received, "requests received but never answered nor logged"
            return log
        time.sleep(0.1)


@pytest.mark.timeout(300)
def test_soak_20k_lines_every_fault_at_once(tmp_path: Path) -> None:
    lines = [line_of(i) for i in range(N_LINES)]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    keys = [(line["task_id"], canonical(line["body"])) for line in lines]
    assert len(set(keys)) == N_LINES  # a request's (task, body) names its line
    out, err = tmp_path / "out.jsonl", tmp_path / "stderr.jsonl"

    with simulator_thread(PHASES[0][2], log_size=200_000) as sim:
        controller = PhaseController(sim)
        controller.start()
        lag = LoopLag(sim)
        started = time.monotonic()
        code = run_batchsms(source, out, err, sim.handle.url, "--rate", str(RATE),
                            "--burst", str(BURST))
        elapsed = time.monotonic() - started
        max_lag = lag.stop()
        controller.done.set()
        controller.join(5)
        log = wait_for_log(sim)
        counts = sim.call(lambda: {task: (c.received, c.applied)
                                   for task, c in sim.handle.tasks.counts.items()})
        stats = sim.call(lambda: (Counter(sim.handle.stats.by_status), sim.handle.stats.resets))

    # Every phase ran, and each fault really happened.
    assert [name for name, _, _ in controller.entered] == [p[1] for p in PHASES[1:]], \
        f"phases entered: {controller.entered}"
    by_status, resets = stats
    for status in (500, 502, 503, 504, 429):
        assert by_status[status] > 0, by_status
    assert resets > 0
    assert controller.answers_during("storm-ra")[429] > 0, controller.entered
    assert controller.answers_during("storm")[429] > 0, controller.entered
    events = [orjson.loads(raw) for raw in err.read_bytes().splitlines()
              if raw.startswith(b"{")]  # the log; the plain summary lines follow it
    retries = [e for e in events if e.get("event") == "task.retry"]
    retry_codes = Counter(e["error_code"] for e in retries)
    assert retry_codes["timeout"] > 0, retry_codes  # hung requests beyond --timeout
    assert retry_codes["connection"] > 0, retry_codes  # resets
    assert code in (0, 1), err.read_text()[-3000:]

    # One complete outcome record per line.
    records = [orjson.loads(raw) for raw in out.read_bytes().splitlines()]
    assert sorted(r["line"] for r in records) == list(range(1, N_LINES + 1))
    run_id = records[0]["run_id"]
    for record in records:
        check_record(record, run_id)
    by_line = {r["line"]: r for r in records}
    statuses = Counter(r["status"] for r in records)
    assert code == (0 if statuses["failed"] == 0 else 1)
    assert statuses["succeeded"] >= 0.97 * N_LINES, statuses
    assert len(retries) >= 0.1 * N_LINES, "the soak must make many retries"

    # Per line: attempts == PUTs of its (task, body) at the server; succeeded => applied.
    puts = [r for r in log if r.method == "PUT"]
    assert len(puts) == len(log)
    per_key: dict[tuple[str | None, bytes], list[Received]] = defaultdict(list)
    for request in sorted(puts, key=lambda r: r.at):
        per_key[(request.task_id, request.body)].append(request)
    answered_200 = {r.request_id: (r.task_id, r.body) for r in puts if r.status == 200}
    for number, (task_id, body) in enumerate(keys, start=1):
        record = by_line[number]
        assert record["task_id"] == task_id
        assert record["ref"] == f"r{number - 1}"
        assert record["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert 1 <= record["attempts"] <= MAX_ATTEMPTS, record
        assert record["attempts"] == len(per_key[(task_id, body)]), record
        if record["status"] == "succeeded":
            assert answered_200.get(record["request_id"]) == (task_id, body), record
            assert counts[task_id][1] >= 1, record
        elif record["attempts"] < MAX_ATTEMPTS:  # stopped early: a status not worth retrying
            assert "retry budget exhausted" in record["error_msg"], record

    # Per task: the simulator's counters agree with the outcomes, and lines went in file order.
    attempts_per_task: Counter[str] = Counter()
    for record in records:
        attempts_per_task[record["task_id"]] += record["attempts"]
    assert {task: c[0] for task, c in counts.items()} == dict(attempts_per_task)
    for i in range(N_LINES - N_TASKS):
        first, second = per_key[keys[i]], per_key[keys[i + N_TASKS]]
        assert first[-1].at < second[0].at, f"task {keys[i][0]}: lines {i + 1} and " \
                                            f"{i + N_TASKS + 1} overlapped at the server"

    # The bucket's bound at the server, in sliding windows.
    bucket = check_bucket(sorted(r.at for r in puts), RATE, BURST, max_lag)
    print(f"\nsoak: {N_LINES} lines, {len(puts)} requests, {len(retries)} retries, "
          f"{dict(statuses)}, {elapsed:.1f}s; answers {dict(by_status)}, resets {resets}; "
          f"retried after {dict(retry_codes)}; {bucket}; loop lag {max_lag * 1000:.0f} ms")


@pytest.mark.timeout(120)
def test_bucket_bound_holds_at_the_server_when_retries_abound(tmp_path: Path) -> None:
    """A rate well below what the machine can do, and a third of the attempts retried: every
    retry passes the bucket too, so the server never sees more than `rate*t + burst`."""
    n, rate, burst = 1000, 100, 10
    source, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    source.write_bytes(b"".join(orjson.dumps(line_of(i)) + b"\n" for i in range(n)))
    faults = FaultConfig(seed=SEED, fail_rate=0.3, reset_rate=0.05, latency_ms=(0.0, 20.0))
    with simulator_thread(faults, log_size=20_000) as sim:
        lag = LoopLag(sim)
        code = run_batchsms(source, out, err, sim.handle.url, "--rate", str(rate),
                            "--burst", str(burst))
        max_lag = lag.stop()
        log = wait_for_log(sim)
    assert code in (0, 1), err.read_text()[-3000:]
    records = [orjson.loads(raw) for raw in out.read_bytes().splitlines()]
    assert sorted(r["line"] for r in records) == list(range(1, n + 1))
    assert sum(r["attempts"] for r in records) == len(log)
    assert len(log) >= 1.3 * n, "many retries"
    arrivals = sorted(r.at for r in log)
    # The bucket was the bottleneck (else the check below proves little): the run kept close
    # to the rate, busiest second included.
    assert max_in_window(arrivals, 1.0) >= 0.8 * rate
    # Over the middle 90% of arrivals: the last lines wait out backoffs of up to 20 s, with
    # jitter, so a whole-run average would measure luck in the tail, not the bucket.
    middle = arrivals[len(arrivals) // 20: len(arrivals) - len(arrivals) // 20]
    print(f"\nmiddle 90%: {len(middle) / (middle[-1] - middle[0]):.1f} req/s; whole run "
          f"{len(arrivals) / (arrivals[-1] - arrivals[0]):.1f} req/s over "
          f"{arrivals[-1] - arrivals[0]:.1f} s")
    assert len(middle) / (middle[-1] - middle[0]) >= 0.8 * rate
    bucket = check_bucket(arrivals, rate, burst, max_lag)
    print(f"\nbucket: {len(log)} requests in {arrivals[-1] - arrivals[0]:.1f}s; {bucket}; "
          f"loop lag {max_lag * 1000:.0f} ms")
