"""Undo across a sequence of runs on one `--out` (issue 18 items 3, 4, 6, 7), against the
simulator: a write whose answer was lost, a kill with a write in flight, an IPv6 address.

Each case changes a task, makes the first run end without knowing whether its write applied
(the simulator holds the answer past the client's timeout, then applies it), lets a resumed run
read the already-changed task, and checks that the undo file still holds the value from before
the first run, and puts it back."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchsms.changes.undo_log import previous_log_path
from batchsms.cli import main
from batchsms.simulator import Fleet
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.threaded import SimThread, simulator_thread
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import batchsms, start_batchsms
from tests.test_undo_run import runnable

pytestmark = pytest.mark.usefixtures("loopback_only")

TOKEN = "sequence-token"
HANG_MS = 1500.0


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSMS_AUTH_TOKEN", TOKEN)


def run(*argv: str | Path) -> int:
    return main(["run", *map(str, argv), "--rate", "0", "--log-format", "json", "--no-progress"])


def task(thread: SimThread, task_id: str) -> dict[str, Any]:
    shown = thread.call(lambda: thread.handle.tasks.show(task_id))
    assert shown is not None
    return shown


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def second_request_hangs(rate: float = 0.5) -> FaultConfig:
    """Faults under which, of the requests that arrive after `reconfigure`, the first (the read
    before the write) is answered at once and the second (the write) is held `HANG_MS`, then
    applied: the simulator draws five numbers per request, the fifth decides a hang."""
    for seed in range(10_000):
        draws = random.Random(seed)
        first, second = ([draws.random() for _ in range(5)][4] for _ in range(2))
        if first >= rate > second:
            return FaultConfig(seed=seed, hang_rate=rate, hang_ms=HANG_MS)
    raise AssertionError("no seed")


def test_undo_after_a_lost_answer_restores_the_value_before_the_first_run(
        tmp_path: Path) -> None:
    """Item 3: run 1's write is applied but its answer lost (`--max-attempts 1`): `failed`,
    maybe applied. `--resume` sends the line again, reading the value run 1 already set; its
    undo file still restores the value from before run 1, and expects what was written."""
    fleet_path = write_jsonl(tmp_path / "fleet.jsonl", [{"id": "t0", "speed_limit": 40}])
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": "t0", "body": {"speed_limit": 500}}])
    out, undo = tmp_path / "out.jsonl", tmp_path / "undo.jsonl"
    with simulator_thread(fleet=Fleet.from_jsonl(fleet_path)) as thread:
        sim = thread.handle
        thread.call(lambda: sim.faults.reconfigure(second_request_hangs()))
        assert run(source, "--endpoint", sim.url, "--out", out, "--undo-file", undo,
                   "--max-attempts", "1", "--timeout", "0.5", "--concurrency", "1") == 1
        [first] = read_jsonl(out)
        assert (first["status"], first["maybe_applied"]) == ("failed", True)
        wait_for(lambda: task(thread, "t0")["speed_limit"] == 500, "the held write to apply")

        thread.call(lambda: sim.faults.reconfigure(FaultConfig()))
        assert run(source, "--endpoint", sim.url, "--out", out, "--undo-file", undo,
                   "--resume", "--verify") == 0
        assert read_jsonl(undo) == [{"task_id": "t0", "ref": None,
                                     "body": {"speed_limit": 40},
                                     "expect": {"speed_limit": 500}}]
        assert run(runnable(undo), "--endpoint", sim.url, "--out", tmp_path / "back.jsonl") == 0
        assert task(thread, "t0")["speed_limit"] == 40


def test_undo_after_a_kill_with_a_write_in_flight_keeps_the_task(tmp_path: Path) -> None:
    """Item 4: SIGKILL while t1's write is held by the service (it lands after the kill, with no
    record); `--resume --skip-unchanged --undo-file` finds t1 as wanted and skips it
    (`unchanged`), and its undo file still puts t1 back."""
    fleet_path = write_jsonl(tmp_path / "fleet.jsonl",
                             [{"id": f"t{i}", "speed_limit": 10 + i} for i in range(3)])
    source = write_jsonl(tmp_path / "in.jsonl",
                         [{"task_id": f"t{i}", "body": {"speed_limit": 700}} for i in range(3)])
    out, undo = tmp_path / "out.jsonl", tmp_path / "undo.jsonl"
    with simulator_thread(fleet=Fleet.from_jsonl(fleet_path)) as thread:
        sim = thread.handle
        thread.call(lambda: sim.faults.reconfigure(
            FaultConfig(hang_rate=1.0, hang_ms=750.0)))  # every answer held, then served;
        # long enough for the kill to land while t1's write is held (three holds before it)
        child = start_batchsms("run", str(source), "--endpoint", sim.url, "--out", str(out),
                               "--undo-file", str(undo), "--concurrency", "1", "--rate", "0",
                               "--log-format", "json", "--no-progress",
                               env={"BATCHSMS_AUTH_TOKEN": TOKEN})
        try:
            wait_for(lambda: sim.counts("t1").received == 1, "t1's write to arrive", 60)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        assert [r["task_id"] for r in read_jsonl(out, skip_cut=True)] == ["t0"]
        wait_for(lambda: task(thread, "t1")["speed_limit"] == 700, "the held write to apply")

        thread.call(lambda: sim.faults.reconfigure(FaultConfig()))
        assert run(source, "--endpoint", sim.url, "--out", out, "--resume", "--skip-unchanged",
                   "--undo-file", undo) == 0
        latest = {r["task_id"]: r for r in read_jsonl(out)}
        assert latest["t1"]["error_code"] == "unchanged"
        lines = {r["task_id"]: r for r in read_jsonl(undo)}
        assert lines["t1"] == {"task_id": "t1", "ref": None, "body": {"speed_limit": 11},
                               "expect": {"speed_limit": 700}}
        assert {t: r["body"] for t, r in lines.items()} == {
            "t0": {"speed_limit": 10}, "t1": {"speed_limit": 11}, "t2": {"speed_limit": 12}}
        assert run(runnable(undo), "--endpoint", sim.url, "--out", tmp_path / "back.jsonl") == 0
        assert [task(thread, f"t{i}")["speed_limit"] for i in range(3)] == [10, 11, 12]
        assert previous_log_path(out).exists()


def test_undo_of_an_ipv6_migration_ip_validates_and_restores(tmp_path: Path) -> None:
    """Item 6: a task on an IPv6 migration address moved to an IPv4 one: the undo line sets
    `use_ipv6` (an IPv6 address is refused without it), passes `batchsms validate`, and runs."""
    fleet_path = write_jsonl(tmp_path / "fleet.jsonl",
                             [{"id": "t0", "migration_ip": "2001:db8::5"}])
    source = write_jsonl(tmp_path / "in.jsonl",
                         [{"task_id": "t0", "body": {"migration_ip": "192.0.2.7"}}])
    out, undo = tmp_path / "out.jsonl", tmp_path / "undo.jsonl"
    with simulator_thread(fleet=Fleet.from_jsonl(fleet_path)) as thread:
        sim = thread.handle
        assert run(source, "--endpoint", sim.url, "--out", out, "--undo-file", undo) == 0
        assert task(thread, "t0")["migration_ip"] == "192.0.2.7"
        assert read_jsonl(undo) == [{
            "task_id": "t0", "ref": None,
            "body": {"migration_ip": "2001:db8::5", "use_ipv6": True},
            "expect": {"migration_ip": "192.0.2.7"}}]
        checked = batchsms("validate", str(runnable(undo)), text=True)
        assert checked.returncode == 0, checked.stderr
        assert run(runnable(undo), "--endpoint", sim.url, "--out", tmp_path / "back.jsonl") == 0
        assert task(thread, "t0")["migration_ip"] == "2001:db8::5"
