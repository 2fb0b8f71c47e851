"""A line's `expect` (CONTRACT §1): checked like a body, read before the write, `conflict`."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.changes.guarded_put import Capture, WriteChecks, checked_put
from batchsms.changes.preview import Verdict
from batchsms.changes.undo_log import PreviousLog
from batchsms.commands.config import RunConfig
from batchsms.commands.plan import plan_async
from batchsms.engine.build import EngineSettings, build_sender
from batchsms.lines.bodies import Planned, Planner, checked_lines
from batchsms.lines.reader import InvalidLine, Line, parse_line
from batchsms.simulator import Fleet, SimulatorHandle, running
from batchsms.simulator.threaded import simulator_in_thread
from batchsms.transport.client import SmsClient
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import Here

TOKEN = {"BATCHSMS_AUTH_TOKEN": "expect-token"}
FLEET = [{"id": "a", "name": "web-01", "speed_limit": 100,
          "target_server": {"name": "a-t", "disks": [{"name": "/dev/vda", "size": 10}]}},
         {"id": "b", "name": "web-02", "speed_limit": 200},
         {"id": "c", "name": "web-03", "speed_limit": 300}]


def fleet(tmp_path: Path) -> Fleet:
    return Fleet.from_jsonl(write_jsonl(tmp_path / "fleet.jsonl", FLEET))


def planned(body: dict[str, Any], expect: Any) -> Planned | InvalidLine:
    line = parse_line(3, orjson.dumps({"task_id": "a", "body": body, "expect": expect}))
    assert isinstance(line, (Line, InvalidLine))
    return line if isinstance(line, InvalidLine) else Planner().plan(line)


def problems(expect: Any, body: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    item = planned(body or {"speed_limit": 5}, expect)
    assert isinstance(item, InvalidLine), item
    return [(p.path, p.message) for p in item.errors]


UNREADABLE = "cannot be checked: ShowTask does not return it"
NULL = ("null cannot be expected: leave the field out to not check it (no update can make a "
        "field absent)")


@pytest.mark.parametrize(("expect", "expected"), [
    ([1], [("expect", "must be an object (the values the task must have before the write, "
            "shaped like the body), got an array")]),
    ("x", [("expect", "must be an object (the values the task must have before the write, "
            "shaped like the body), got a string")]),
    ({}, [("expect", "nothing to check: name at least one field and the value the task must "
           "have")]),
    ({"target_server": {}}, [("expect", "nothing to check: name at least one field and the "
                              "value the task must have")]),
    ({"speed_limit": "321"}, [("expect.speed_limit", "must be an integer (Integer), got a "
                               "string")]),
    ({"speed_limit": 5000}, [("expect.speed_limit", "must be between 0 and 1000, got 5000")]),
    ({"speedlimit": 1}, [("expect.speedlimit", "unknown field 'speedlimit' (not in "
                          "PutTaskReq); did you mean 'speed_limit'?")]),
    ({"target_server": {"disks": [{"name": "/dev/vda", "sise": 1}]}},
     [("expect.target_server.disks[0].sise", "unknown field 'sise' (not in TargetDisk); did "
       "you mean 'size'?")]),
    ({"speed_limit": None}, [("expect.speed_limit", NULL)]),
    ({"name": "x", "target_server": {"disks": [{"name": None}]}},
     [("expect.target_server.disks[0].name", NULL)]),
    ({"use_ipv6": True}, [("expect.use_ipv6", UNREADABLE)]),
    ({"speed_limit": 1, "target_server": {"networks": [{"mac": "m"}]}},
     [("expect.target_server.networks", UNREADABLE)]),
    ({"migration_ip": "10.0.0.300"}, [("expect.migration_ip", "must be an IPv4 or an IPv6 "
                                       "address, got '10.0.0.300'")]),
])
def test_bad_expect_shapes_are_invalid_with_paths(expect: Any,
                                                  expected: list[tuple[str, str]]) -> None:
    """Each problem of an `expect` is reported at its path under `expect.`."""
    assert problems(expect) == expected


def test_body_and_expect_problems_are_all_reported() -> None:
    """A line wrong in both: every problem, the body's first."""
    assert problems({"speedlimit": 1}, {"speedlimit": 5}) == [
        ("body.speedlimit", "unknown field 'speedlimit' (not in PutTaskReq); did you mean "
         "'speed_limit'?"),
        ("expect.speedlimit", "unknown field 'speedlimit' (not in PutTaskReq); did you mean "
         "'speed_limit'?")]


def test_a_good_expect_is_kept_canonical_and_leaves_the_body_hash_alone() -> None:
    """Canonical bytes beside the body; the hash (the resume key) is the body's alone. An IPv6
    `migration_ip` is accepted: `use_ipv6` cannot be expected."""
    plain = Planner().plan(Line(1, "a", None, {"speed_limit": 5}))
    item = planned({"speed_limit": 5}, {"speed_limit": 321, "migration_ip": "2001:db8::5",
                                        "target_server": {"name": "t"}})
    assert isinstance(plain, Planned)
    assert isinstance(item, Planned)
    assert plain.expect is None
    assert item.expect == (b'{"migration_ip":"2001:db8::5","speed_limit":321,'
                           b'"target_server":{"name":"t"}}')
    assert (item.body, item.sha256) == (plain.body, plain.sha256)
    assert parse_line(1, b'{"task_id": "a", "body": {"speed_limit": 5}, "expect": null}') == \
        Line(1, "a", None, {"speed_limit": 5}, None)


def test_validate_checks_expect(tmp_path: Path, here: Here) -> None:
    """`validate` prints an expect's problems at their paths and exits 1."""
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"task_id": "a", "body": {"speed_limit": 5}, "expect": {"speed_limit": 100}},
        {"task_id": "a", "body": {"speed_limit": 5}, "expect": {"use_ipv6": False}}])
    result = here("validate", str(source))
    assert result.returncode == 1
    assert result.stdout == (f"line 2: expect.use_ipv6: {UNREADABLE}\n"
                             "2 lines: 1 valid, 1 invalid\n")


def test_dry_run_prints_the_expect(tmp_path: Path, here: Here) -> None:
    """`--dry-run` shows a line's `expect` (canonical), and no key for a line without one."""
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"task_id": "a", "body": {"speed_limit": 5}, "expect": {"speed_limit": 100,
                                                                "name": "web-01"}},
        {"task_id": "b", "body": {"speed_limit": 5}}])
    result = here("run", str(source), "--dry-run")
    assert result.returncode == 0, result.stderr
    first, second = (orjson.loads(line) for line in result.stdout.splitlines())
    assert first["expect"] == {"name": "web-01", "speed_limit": 100}
    assert first["body"] == {"speed_limit": 5}
    assert "expect" not in second


def speed(sim: SimulatorHandle, task_id: str) -> Any:
    view = sim.tasks.show(task_id)
    assert view is not None
    return view.get("speed_limit")


async def handle(sim: SimulatorHandle, item: Planned) -> Any:
    async with SmsClient(sim.url, None, concurrency=1, timeout=5) as client:
        sender = build_sender(client, EngineSettings(rate=0, concurrency=1))
        return await checked_put("r1", WriteChecks(), None)(item, sender)


@pytest.mark.anyio
async def test_checked_put_reads_first_and_skips_a_conflict(tmp_path: Path) -> None:
    """No check asked for, but an `expect`: one GET; a difference -> skipped `conflict` naming
    each field, no PUT; a match -> the PUT, both requests counted."""
    wrong = planned({"speed_limit": 50}, {"speed_limit": 321, "name": "web-01",
                                          "target_server": {"name": "other"}})
    right = planned({"speed_limit": 50}, {"speed_limit": 100, "name": "web-01"})
    assert isinstance(wrong, Planned)
    assert isinstance(right, Planned)
    async with running(fleet=fleet(tmp_path)) as sim:
        skipped = await handle(sim, wrong)
        assert [r.method for r in sim.requests] == ["GET"]
        written = await handle(sim, right)
        assert [r.method for r in sim.requests] == ["GET", "GET", "PUT"]
        assert speed(sim, "a") == 50
    assert (skipped.status.value, skipped.error_code, skipped.attempts, skipped.reads,
            skipped.http_status) == ("skipped", "conflict", 0, 1, 200)
    assert skipped.error_msg == ('the task is not as expected (nothing written): speed_limit: '
                                 'expected 321, found 100; target_server.name: expected "other", '
                                 'found "a-t"')
    assert skipped.body_sha256 == wrong.sha256
    assert (written.status.value, written.error_code, written.attempts, written.reads) == (
        "succeeded", None, 1, 1)


def outside_put(sim: SimulatorHandle, task_id: str, body: dict[str, Any]) -> None:
    """Someone else's write, straight to the service."""
    request = urllib.request.Request(f"{sim.url}/v3/tasks/{task_id}", data=orjson.dumps(body),
                                     method="PUT", headers={"Content-Type": "application/json",
                                                            "X-Auth-Token": "someone-else"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as answer:
        assert answer.status == 200


def test_plain_run_skips_a_conflict_after_an_outside_write(tmp_path: Path, here: Here) -> None:
    """Run 1 sets a to 321; someone else sets 999; run 2 (an undo line: back to 100, expecting
    321) is a conflict: no PUT, task still 999, exit 1, `report` counts it not done. Lines
    without `expect` in the same plain run go straight to the PUT, no read; a matching
    `expect` writes."""
    out = tmp_path / "out.jsonl"
    with simulator_in_thread(fleet=fleet(tmp_path), log_size=100) as sim:
        first = write_jsonl(tmp_path / "change.jsonl", [
            {"task_id": "a", "body": {"speed_limit": 321}}])
        assert here("run", str(first), "--endpoint", sim.url, "--out", str(out), "--rate", "0",
                    env=TOKEN).returncode == 0
        outside_put(sim, "a", {"speed_limit": 999})
        puts = sim.counts("a").received
        undo = write_jsonl(tmp_path / "undo.jsonl", [
            {"task_id": "a", "body": {"speed_limit": 100}, "expect": {"speed_limit": 321}},
            {"task_id": "b", "body": {"speed_limit": 7}},
            {"task_id": "c", "body": {"speed_limit": 8}, "expect": {"speed_limit": 300}}])
        earlier = len(sim.requests)
        result = here("run", str(undo), "--endpoint", sim.url, "--out", str(out), "--rate", "0",
                      "--concurrency", "1", "--log-format", "json", env=TOKEN)
        seen = sorted(f"{r.method} {r.task_id}" for r in list(sim.requests)[earlier:])
        assert sim.counts("a").received == puts  # nothing written to a
        assert speed(sim, "a") == 999
        assert speed(sim, "c") == 8
    assert result.returncode == 1, result.stderr
    assert seen == ["GET a", "GET c", "PUT b", "PUT c"]
    records = {r["line"]: r for r in read_jsonl(out) if r["run_id"] != read_jsonl(out)[0]["run_id"]}
    assert (records[1]["status"], records[1]["error_code"], records[1]["attempts"],
            records[1]["reads"]) == ("skipped", "conflict", 0, 1)
    assert "speed_limit: expected 321, found 999" in records[1]["error_msg"]
    assert (records[2]["status"], records[2]["attempts"]) == ("succeeded", 1)
    assert "reads" not in records[2]  # a line that read nothing has no `reads`
    assert (records[3]["status"], records[3]["attempts"], records[3]["reads"]) == (
        "succeeded", 1, 1)
    report = here("report", str(out), "--input", str(undo), "--json")
    assert report.returncode == 1
    figures = orjson.loads(report.stdout)
    assert (figures["done"], figures["not_done"]) == (2, 1)
    assert figures["by_error_code"]["conflict"] == 1


@pytest.mark.anyio
async def test_plan_shows_a_conflict(tmp_path: Path, here: Here) -> None:
    """`plan`: a line whose `expect` does not hold is a `conflict` with each difference, leaves
    the projection alone (the next line of the task is compared with the task as it is),
    reads only, and makes the exit code 1."""
    rows = [{"task_id": "a", "body": {"speed_limit": 50}, "expect": {"speed_limit": 321}},
            {"task_id": "a", "body": {"speed_limit": 100}},
            {"task_id": "b", "body": {"speed_limit": 5}, "expect": {"speed_limit": 200}}]
    config = RunConfig(input=str(write_jsonl(tmp_path / "in.jsonl", rows)), rate=0,
                       concurrency=2)
    entries: list[Any] = []
    async with running(fleet=fleet(tmp_path)) as sim:
        await plan_async(config, checked_lines(config.input, {}), sim.url, None, True,
                         entries.append)
        assert {r.method for r in sim.requests} == {"GET"}
    assert [e.verdict for e in entries] == [Verdict.CONFLICT, Verdict.AS_WANTED, Verdict.CHANGE]
    assert list(entries[0].text()) == ["line 1 a: conflict",
                                       "  speed_limit: expected 321, found 100"]
    data = orjson.loads(entries[0].to_json())
    assert data["verdict"] == "conflict"
    assert data["conflicts"] == {"speed_limit": {"expected": 321, "found": 100}}
    assert data["changes"] == {}
    assert "conflicts" not in orjson.loads(entries[2].to_json())


@pytest.mark.anyio
async def test_plan_calls_a_task_already_as_wanted_as_wanted_whatever_its_expect(
        tmp_path: Path) -> None:
    """`plan` agrees with `run`: a line whose task already has every value it sets needs no
    write, so its unmet `expect` is no conflict (the undo of a write that never landed)."""
    rows = [{"task_id": "a", "body": {"speed_limit": 100}, "expect": {"speed_limit": 321}}]
    config = RunConfig(input=str(write_jsonl(tmp_path / "in.jsonl", rows)), rate=0,
                       concurrency=1)
    entries: list[Any] = []
    async with running(fleet=fleet(tmp_path)) as sim:
        await plan_async(config, checked_lines(config.input, {}), sim.url, None, True,
                         entries.append)
    assert [e.verdict for e in entries] == [Verdict.AS_WANTED]


def test_plan_command_counts_conflicts_and_exits_1(tmp_path: Path, here: Here) -> None:
    """The totals name the conflicts; exit 1, as `run` would give."""
    with simulator_in_thread(fleet=fleet(tmp_path)) as sim:
        source = write_jsonl(tmp_path / "in.jsonl", [
            {"task_id": "a", "body": {"speed_limit": 50}, "expect": {"speed_limit": 321}},
            {"task_id": "b", "body": {"speed_limit": 5}}])
        result = here("plan", str(source), "--endpoint", sim.url, "--rate", "0", env=TOKEN)
        matching = write_jsonl(tmp_path / "ok.jsonl", [
            {"task_id": "a", "body": {"speed_limit": 50}, "expect": {"speed_limit": 100}}])
        fine = here("plan", str(matching), "--endpoint", sim.url, "--rate", "0", env=TOKEN)
        assert sim.stats.applied == 0
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "2 lines: 1 would change, 0 already as wanted, 0 not comparable, 0 would fail, "
        "1 conflict")
    assert fine.returncode == 0, fine.stderr
    assert fine.stdout.splitlines()[-1] == (
        "1 lines: 1 would change, 0 already as wanted, 0 not comparable, 0 would fail")


@pytest.mark.anyio
async def test_conflict_comes_before_capture_and_a_task_already_as_wanted_is_unchanged(
        tmp_path: Path) -> None:
    """With --skip-unchanged and --undo-file: a line whose `expect` does not hold is a
    `conflict` (not done) and nothing reaches the side log; but a task already as the line
    wants needs no write whatever its `expect` (the undo of a write that never reached the
    service): `unchanged`, with or without --skip-unchanged, and nothing is written."""
    item = planned({"speed_limit": 50}, {"name": "someone-else"})
    done = planned({"speed_limit": 100}, {"name": "someone-else"})
    assert isinstance(item, Planned)
    assert isinstance(done, Planned)
    log = PreviousLog(tmp_path / "out.jsonl")
    async with running(fleet=fleet(tmp_path)) as sim:
        async with SmsClient(sim.url, None, concurrency=1, timeout=5) as client:
            sender = build_sender(client, EngineSettings(rate=0, concurrency=1))
            out = await checked_put("r1", WriteChecks(skip_unchanged=True, capture=True),
                                    Capture(log))(item, sender)
            plain = await checked_put("r1", WriteChecks())(done, sender)
        assert [r.method for r in sim.requests] == ["GET", "GET"]
    log.close()
    assert (out.error_code, out.previous) == ("conflict", None)
    assert str(out.error_msg).endswith('name: expected "someone-else", found "web-01"')
    assert log.path.read_bytes() == b""
    assert (plain.status.value, plain.error_code) == ("skipped", "unchanged")
