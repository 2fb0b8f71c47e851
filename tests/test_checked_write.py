"""The run's look before and after a write, one line at a time, against the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.changes.guarded_put import Capture, WriteChecks, checked_put
from batchsms.changes.undo_log import PreviousLog
from batchsms.engine.build import EngineSettings, build_sender
from batchsms.journal.outcomes import Outcome, Status
from batchsms.lines.bodies import Planned, Planner
from batchsms.lines.reader import Line
from batchsms.simulator import Fleet, SimulatorHandle, running
from batchsms.simulator.faults import FaultConfig
from batchsms.transport.client import SmsClient

pytestmark = pytest.mark.anyio

FLEET = [{"id": "a", "name": "web-01", "speed_limit": 100},
         {"id": "b", "name": "web-02", "speed_limit": 200,
          "target_server": {"name": "b-t", "ip": None}}]


def fleet(tmp_path: Path) -> Fleet:
    path = tmp_path / "fleet.jsonl"
    path.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in FLEET))
    return Fleet.from_jsonl(path)


def planned(number: int, task_id: str, body: dict[str, Any]) -> Planned:
    item = Planner().plan(Line(number, task_id, f"ref-{number}", body))
    assert isinstance(item, Planned)
    return item


async def handle(sim: SimulatorHandle, checks: WriteChecks, item: Planned,
                 capture: Capture | None = None) -> Outcome:
    async with SmsClient(sim.url, None, concurrency=1, timeout=5) as client:
        sender = build_sender(client, EngineSettings(rate=0, concurrency=1))
        return await checked_put("r1", checks, capture)(item, sender)


def methods(sim: SimulatorHandle) -> list[str]:
    return [f"{r.method} {r.task_id}" for r in sim.requests]


async def test_skip_unchanged_reads_and_does_not_write(tmp_path: Path) -> None:
    """A line already as wanted: one GET, no PUT, skipped as unchanged with the read counted."""
    async with running(fleet=fleet(tmp_path)) as sim:
        out = await handle(sim, WriteChecks(skip_unchanged=True),
                           planned(1, "a", {"speed_limit": 100, "name": "web-01"}))
        assert methods(sim) == ["GET a"]
    assert (out.status, out.error_code, out.attempts, out.reads) == (
        Status.SKIPPED, "unchanged", 0, 1)
    assert out.error_msg == "already as wanted: name, speed_limit"


async def test_skip_unchanged_sends_a_change_and_an_uncomparable_line(tmp_path: Path) -> None:
    """A readable change is sent; so is a line with a field that cannot be read back."""
    async with running(fleet=fleet(tmp_path)) as sim:
        changed = await handle(sim, WriteChecks(skip_unchanged=True),
                               planned(1, "a", {"speed_limit": 300}))
        blind = await handle(sim, WriteChecks(skip_unchanged=True),
                             planned(2, "b", {"speed_limit": 200, "use_ipv6": False}))
        assert methods(sim) == ["GET a", "PUT a", "GET b", "PUT b"]
    assert (changed.status, changed.attempts, changed.reads) == (Status.SUCCEEDED, 1, 1)
    assert blind.status is Status.SUCCEEDED


async def test_capture_keeps_previous_values_in_the_outcome(tmp_path: Path) -> None:
    """--undo-file: `previous` holds what the task had before, null where it had nothing."""
    log = PreviousLog(tmp_path / "out.jsonl")
    async with running(fleet=fleet(tmp_path)) as sim:
        out = await handle(sim, WriteChecks(capture=True), planned(
            1, "b", {"speed_limit": 50, "target_server": {"ip": "10.0.0.1", "name": "x"}}),
            Capture(log))
        assert methods(sim) == ["GET b", "PUT b"]
    log.close()
    assert out.status is Status.SUCCEEDED
    assert out.previous == {"speed_limit": 200, "target_server": {"ip": None, "name": "b-t"}}
    assert orjson.loads(out.to_json())["previous"] == out.previous
    entry = orjson.loads(log.path.read_bytes())  # written before the write was sent
    assert (entry["run_id"], entry["line"], entry["previous"]) == ("r1", 1, out.previous)
    # what the write sets, for the same fields: the undo line's `expect`
    assert entry["wrote"] == {"speed_limit": 50, "target_server": {"ip": "10.0.0.1", "name": "x"}}


async def test_read_before_that_fails_writes_nothing(tmp_path: Path) -> None:
    """An unknown task: the read's 404 is the line's failure, and no PUT is sent."""
    async with running(fleet=fleet(tmp_path)) as sim:
        out = await handle(sim, WriteChecks(skip_unchanged=True),
                           planned(1, "zz", {"speed_limit": 5}))
        assert methods(sim) == ["GET zz"]
    assert (out.status, out.http_status, out.error_code) == (Status.FAILED, 404, "SMS.1801")
    assert out.error_msg is not None
    assert out.error_msg.startswith("reading the task before the write: ")
    assert out.previous is None
    assert not out.maybe_applied


async def test_verify_passes_when_the_write_took(tmp_path: Path) -> None:
    """--verify: PUT then GET; equal, so the line succeeds: 1 attempt (the write), 1 read."""
    async with running(fleet=fleet(tmp_path)) as sim:
        out = await handle(sim, WriteChecks(verify=True), planned(1, "a", {"speed_limit": 7}))
        assert methods(sim) == ["PUT a", "GET a"]
    assert (out.status, out.attempts, out.reads, out.error_code) == (
        Status.SUCCEEDED, 1, 1, None)


async def test_verify_catches_a_service_that_ignores_a_field(tmp_path: Path) -> None:
    """A 200 that did not apply speed_limit: failed, verify_mismatch, the difference named."""
    faults = FaultConfig(ignore_fields=("speed_limit",))
    async with running(fleet=fleet(tmp_path), faults=faults) as sim:
        out = await handle(sim, WriteChecks(verify=True, capture=True),
                           planned(1, "a", {"speed_limit": 7, "name": "renamed"}),
                           Capture(PreviousLog(tmp_path / "out.jsonl")))
    assert (out.status, out.error_code) == (Status.FAILED, "verify_mismatch")
    assert out.error_msg == "read back after the write differs: speed_limit: sent 7, read back 100"
    assert out.previous == {"name": "web-01", "speed_limit": 100}
