"""Crash safety: SIGKILL at seeded random points, `--resume` until done; SIGTERM and SIGINT.

The simulator runs in a thread of this process with faults on (5xx, resets, latency), so kills
land while lines are in flight or waiting to be retried, and its live per-task counters are
snapshot right after each kill.

SIGKILL (CONTRACT §3, §10), for each seed: a first run, then `--resume` runs, each possibly
killed again (after a random 0.2-2.5 s, or once the journal grew by a random number of bytes),
until one exits 0. After the first kill that finds records (and some later ones) the journal's
last record is cut mid-line, as a crash during a write leaves it. Then:
- every line's latest record is `succeeded` or `skipped`/`already_succeeded`; the last run has
  exactly one record per line;
- no line whose success was journaled before a kill was sent again: its task's `received`
  count never moved after that kill;
- a kill loses at most the lines in flight: the tasks whose server count differs from the
  attempts journaled for them are at most `concurrency` per kill, plus the cut records;
- the journal is whole lines: every line is one record or one cut fragment (never two records
  run together); each `--resume` run after a cut logs `journal.cut_lines` with their number,
  and `batchsms report --json` counts exactly the cut fragments as `cut_lines`.

SIGTERM / SIGINT with faults on (5xx, resets, hung requests, a 429 with a long Retry-After that
parks lines): exit 143 / 130 well before the Retry-After, every line has exactly one record and
the file is complete the moment the process is gone, attempts match the server's counts.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.engine.pipeline import MAX_WORKERS_PER_PLACE
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.threaded import SimThread, simulator_thread
from tests.processes import start_batchsms

pytestmark = pytest.mark.slow

TOKEN = {"BATCHSMS_AUTH_TOKEN": "crash-token"}
N_LINES = 1200
CONCURRENCY = 8
MAX_ATTEMPTS = 5
MAX_RUNS = 8  # a seed must be done by then
MAX_KILLS = 3  # per seed
FAULTS = FaultConfig(fail_rate=0.1, reset_rate=0.01, latency_ms=(2.0, 40.0))
RECORD_START = b'{"run_id":'


def write_input(path: Path, n: int, prefix: str) -> list[str]:
    task_ids = [f"{prefix}-{i}" for i in range(n)]
    path.write_bytes(b"".join(
        orjson.dumps({"task_id": task_id, "body": {"speed_limit": i % 1001}}) + b"\n"
        for i, task_id in enumerate(task_ids)))
    return task_ids


def start_run(source: Path, out: Path, url: str, *extra: str,
              stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return start_batchsms("run", str(source), "--endpoint", url, "--out", str(out), "--rate",
                          "0", "--concurrency", str(CONCURRENCY), "--max-attempts",
                          str(MAX_ATTEMPTS), "--log-format", "json", "--no-progress", *extra,
                          env=TOKEN, stderr=stderr)


def journal(out: Path) -> tuple[list[dict[str, Any]], list[bytes]]:
    """(whole records in file order, unparseable lines)."""
    records: list[dict[str, Any]] = []
    cut: list[bytes] = []
    if not out.exists():
        return records, cut
    for raw in out.read_bytes().splitlines():
        if not raw.strip():
            continue
        try:
            records.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            cut.append(raw)
    return records, cut


def events(stderr: Path) -> list[dict[str, Any]]:
    """The JSON log events of a run's stderr (the plain summary lines left out)."""
    return [orjson.loads(raw) for raw in stderr.read_bytes().splitlines()
            if raw.startswith(b"{")]


def received_counts(sim: SimThread) -> dict[str, int]:
    return sim.call(lambda: {task: c.received for task, c in sim.handle.tasks.counts.items()})


def cut_last_record(out: Path, rng: random.Random) -> bool:
    """Cut the journal's last record mid-line, as a crash during its write would."""
    data = out.read_bytes() if out.exists() else b""
    if not data.endswith(b"\n"):
        return False  # empty, or already ends cut
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    keep = start + rng.randint(1, len(data) - 2 - start)  # at least one byte, never the "}"
    with out.open("r+b") as f:
        f.truncate(keep)
    return True


def run_until_killed(proc: subprocess.Popen[bytes], out: Path, rng: random.Random) -> bool:
    """Kill `proc` at a random point; False if it finished first."""
    start, size0 = time.monotonic(), out.stat().st_size if out.exists() else 0
    if rng.random() < 0.5:
        after = rng.uniform(0.2, 2.5)

        def reached() -> bool:
            return time.monotonic() - start >= after
    else:
        grow = rng.randint(2_000, 250_000)

        def reached() -> bool:
            return out.exists() and out.stat().st_size >= size0 + grow
    deadline = start + 60
    while proc.poll() is None and not reached():
        if time.monotonic() > deadline:
            finish(proc, 0)
        time.sleep(0.005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return True


def finish(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """The exit code of `proc`; killed (and the test failed) if it runs longer than `timeout`."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"batchsms run still running after {timeout:g}s")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [101, 202, 303, 404])
def test_sigkill_at_random_points_then_resume(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    task_ids = write_input(source, N_LINES, f"c{seed}")
    kills: list[tuple[set[str], dict[str, int]]] = []  # (journaled successes, received) per kill
    cuts, killed_with_records, codes = 0, 0, []

    with simulator_thread(replace(FAULTS, seed=seed)) as sim:
        for attempt in range(MAX_RUNS):
            cut_before = len(journal(out)[1])
            err = tmp_path / f"err{attempt}.jsonl"
            with err.open("wb") as stderr:
                proc = start_run(source, out, sim.handle.url,
                                 *(["--resume"] if attempt else []), stderr=stderr)
            if len(kills) < MAX_KILLS and (attempt == 0 or rng.random() < 0.6) \
                    and run_until_killed(proc, out, rng):
                records, _ = journal(out)
                killed_with_records += bool(records)
                # The first kill that finds records, and some later ones, leave a torn record.
                if records and (cuts == 0 or rng.random() < 0.3):
                    cuts += cut_last_record(out, rng)
                    records, _ = journal(out)
                done = {r["task_id"] for r in records if r["status"] == "succeeded"}
                kills.append((done, received_counts(sim)))
                continue
            codes.append(finish(proc, 120))
            if cut_before:  # --resume skipped the cut records, and said how many
                warned = [e for e in events(err) if e.get("event") == "journal.cut_lines"]
                assert [e["count"] for e in warned] == [cut_before], warned
            if codes[-1] == 0:
                break
        else:
            pytest.fail(f"seed {seed}: no run exited 0 in {MAX_RUNS} runs (exit codes {codes})")
        final = received_counts(sim)
        report = subprocess.run(
            [sys.executable, "-m", "batchsms", "report", str(out), "--json"],
            capture_output=True, check=False, timeout=60)

    assert kills, "the first run is always killed"
    assert cuts >= min(1, killed_with_records)
    records, cut_lines = journal(out)

    # The journal is whole lines: one record each, or a cut fragment; never two run together.
    raw_lines = [raw for raw in out.read_bytes().splitlines() if raw.strip()]
    assert out.read_bytes().endswith(b"\n")
    for raw in raw_lines:  # a record, or a fragment of one: it starts as a record does
        assert raw.count(RECORD_START) <= 1, raw
        head = raw[:len(RECORD_START)]
        assert head == RECORD_START[:len(head)], raw
    assert len(cut_lines) >= cuts
    for raw in cut_lines:
        assert not raw.rstrip().endswith(b"}"), raw  # a prefix of a record, not a garbled one
    summary = orjson.loads(report.stdout)
    assert summary["cut_lines"] == len(cut_lines), summary
    assert summary["done"] == N_LINES, summary
    assert summary["not_done"] == 0, summary
    assert report.returncode == 0, report.stderr

    # Every line ends accounted for; the last run wrote exactly one record per line.
    last_run = records[-1]["run_id"]
    final_run = [r for r in records if r["run_id"] == last_run]
    assert sorted(r["line"] for r in final_run) == list(range(1, N_LINES + 1))
    latest = {r["line"]: r for r in records}
    for line, record in latest.items():
        assert record["task_id"] == task_ids[line - 1]
        assert (record["status"], record["error_code"]) in (
            ("succeeded", None), ("skipped", "already_succeeded")), record
    assert len(latest) == N_LINES

    # No success journaled before a kill was sent again after it.
    for k, (done, received) in enumerate(kills):
        for task_id in done:
            assert final.get(task_id, 0) == received[task_id], \
                f"kill {k + 1}: {task_id} succeeded before the kill and was sent again"
        resent = [r for r in final_run if r["task_id"] in done and r["status"] != "skipped"]
        assert not resent, resent[:3]

    # A kill loses at most the lines in flight (and a cut record its own line).
    journaled: Counter[str] = Counter()
    for record in records:
        journaled[record["task_id"]] += record["attempts"]
    for task_id in task_ids:
        assert final.get(task_id, 0) >= journaled[task_id], task_id
    unjournaled = [t for t in task_ids if final.get(t, 0) != journaled[t]]
    # Lines held at a kill: those in flight, and those parked in backoff or deferred (a parked
    # line lends its place so first attempts keep going: MAX_WORKERS_PER_PLACE per place).
    held = CONCURRENCY * MAX_WORKERS_PER_PLACE
    assert len(unjournaled) <= len(kills) * held + len(cut_lines), unjournaled
    print(f"\nseed {seed}: {len(kills)} kills, {cuts} cut by the test, exit codes {codes}, "
          f"{len(cut_lines)} cut lines, {len(records)} records, "
          f"{len(unjournaled)} tasks with unjournaled attempts")


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, "the run ended before the signal"
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_under_faults_exits_with_complete_flushed_outcomes(
        tmp_path: Path, signum: int, code: int) -> None:
    n = 3000
    source, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    task_ids = write_input(source, n, f"sig{signum}")
    faults = FaultConfig(seed=signum, fail_rate=0.15, reset_rate=0.03, hang_rate=0.01,
                         hang_ms=1500.0, latency_ms=(5.0, 60.0))
    # Then a 429 storm whose Retry-After parks lines for a minute: the signal must not wait.
    storm = replace(faults, seed=signum + 1, throttle_rate=1, retry_after=60.0)
    with simulator_thread(faults) as sim, err.open("wb") as stderr:
        stats = sim.handle.stats
        proc = start_run(source, out, sim.handle.url, "--timeout", "1", "--concurrency", "16",
                         "--max-attempts", "8", "--abort-failure-ratio", "1", stderr=stderr)
        try:
            wait_until(lambda: stats.received >= 250, proc)
            sim.call(lambda: sim.handle.faults.reconfigure(storm))
            wait_until(lambda: stats.by_status[429] >= 3, proc)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.send_signal(signum)
        signalled = time.monotonic()
        assert finish(proc, 60) == code
        took = time.monotonic() - signalled
        records = [orjson.loads(raw) for raw in out.read_bytes().splitlines()]  # all whole
        # The server may still be serving a hung request the client gave up on: let it settle.
        settle = time.monotonic() + 10
        while sim.call(lambda: stats.received != sum(stats.by_status.values()) + stats.resets) \
                and time.monotonic() < settle:
            time.sleep(0.05)
        counts = sim.call(lambda: {t: (c.received, c.applied)
                                   for t, c in sim.handle.tasks.counts.items()})

    assert took < 30, f"exit took {took:.1f}s: parked lines held the run"
    assert out.read_bytes().endswith(b"\n")
    assert sorted(r["line"] for r in records) == list(range(1, n + 1))
    assert len({r["run_id"] for r in records}) == 1
    statuses = Counter((r["status"], r["error_code"]) for r in records)
    assert statuses["succeeded", None] > 0, statuses
    assert statuses["skipped", "interrupted"] > 0, statuses  # never sent
    assert statuses["failed", "interrupted"] > 0, statuses  # waiting for a retry
    parked = [r for r in records if r["error_code"] == "interrupted" and r["http_status"] == 429]
    assert parked, "no line was woken from its Retry-After wait"
    for record in records:
        task_id = record["task_id"]
        assert task_id == task_ids[record["line"] - 1]
        received, applied = counts.get(task_id, (0, 0))
        assert record["attempts"] == received, record
        if record["status"] == "succeeded":
            assert applied >= 1, record
        elif record["status"] == "skipped":
            assert record["attempts"] == 0, record
        else:
            assert record["status"] == "failed", record
            assert record["attempts"] >= 1, record
    name = signal.Signals(signum).name
    finished = [e for e in events(err) if e.get("event") == "run.finished"]
    assert len(finished) == 1, finished
    assert finished[0]["stopped"] == f"interrupted by {name}"  # json logs: the summary event
    print(f"\n{name}: exit {code} {took:.1f}s after the signal; {dict(statuses)}")
