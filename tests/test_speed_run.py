"""Speed-limit lines through `run` end to end against the simulator (issue 21, docs/reference.md
§11): the bad-input table (invalid, no request), the fleet-wide run with `--op speed-limit
--rules`, `--skip-unchanged`, `--verify`, undo restoring every task, resume after SIGKILL with
mixed ops, and per-task order across ops."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.cli import main
from batchsms.lines.speed_rules import rules_option, same_rules
from batchsms.simulator import Fleet
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.threaded import SimThread, simulator_thread
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import batchsms, kill_when

read = partial(read_jsonl, skip_cut=True)
pytestmark = pytest.mark.usefixtures("loopback_only")

TOKEN = "speed-token"
NIGHT = "00:00-07:59=1000,08:00-19:59=100@50,20:00-23:59=1000"
TARGET: list[dict[str, Any]] = rules_option(NIGHT)["speed_limit"]
OTHER = [{"start": "09:00", "end": "17:00", "speed": 20}]


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSMS_AUTH_TOKEN", TOKEN)


def run(*argv: str | Path) -> int:
    return main(["run", *map(str, argv), "--rate", "0", "--log-format", "json"])


def fleet_of(tmp_path: Path, n: int) -> Fleet:
    """n tasks: a third with no rules, a third with the target rules (listed in another
    order, the threshold as a float), a third with other rules."""
    tasks = []
    for i in range(n):
        task: dict[str, Any] = {"id": f"t{i}", "name": f"task-{i}", "speed_limit": 10 + i}
        if i % 3 == 1:
            task["speed_limit_rules"] = [
                {**rule, "over_speed_threshold": float(rule["over_speed_threshold"])}
                if "over_speed_threshold" in rule else rule for rule in reversed(TARGET)]
        elif i % 3 == 2:
            task["speed_limit_rules"] = OTHER
        tasks.append(task)
    return Fleet.from_jsonl(write_jsonl(tmp_path / "fleet.jsonl", tasks))


def rules(thread: SimThread, fleet: Fleet, n: int) -> dict[str, Any]:
    return thread.call(lambda: {f"t{i}": fleet.rules(f"t{i}") for i in range(n)})


BAD_RULES: list[tuple[object, str]] = [
    ([{"start": f"0{i}:00", "end": f"0{i}:30", "speed": 1} for i in range(6)],
     "body.speed_limit"),
    ([{"start": "24:00", "end": "23:59", "speed": 1}], "body.speed_limit[0].start"),
    ([{"start": "8:00", "end": "09:00", "speed": 1}], "body.speed_limit[0].start"),
    ([{"start": "08:60", "end": "09:00", "speed": 1}], "body.speed_limit[0].start"),
    ([{"start": "08:00", "end": "08:00", "speed": 1}], "body.speed_limit[0].end"),
    ([{"start": "22:00", "end": "06:00", "speed": 1}], "body.speed_limit[0].end"),
    ([{"start": "08:00", "end": "10:00", "speed": 1}, {"start": "09:00", "end": "11:00",
                                                       "speed": 1}], "body.speed_limit[1]"),
    ([{"start": "08:00", "end": "09:00", "speed": 1001}], "body.speed_limit[0].speed"),
    ([{"start": "08:00", "end": "09:00", "speed": "100"}], "body.speed_limit[0].speed"),
    ([{"start": "08:00", "end": "09:00", "speed": 1.5}], "body.speed_limit[0].speed"),
    ([{"start": "08:00", "end": "09:00", "speed": True}], "body.speed_limit[0].speed"),
    ([{"start": "08:00", "end": "09:00", "speed": 1, "over_speed_threshold": 5}],
     "body.speed_limit[0].over_speed_threshold"),
    ([{"start": "08:00", "end": "09:00", "speed": 1, "over_speed_threshold": 101}],
     "body.speed_limit[0].over_speed_threshold"),
    ([{"start": "08:00", "end": "09:00", "speed": 1, "sped": 2}], "body.speed_limit[0].sped"),
    (["08:00-09:00"], "body.speed_limit[0]"),
    ({"start": "08:00"}, "body.speed_limit"),
]


def test_every_bad_input_is_invalid_and_sends_nothing(tmp_path: Path) -> None:
    """The issue's table: each line `invalid`, its problem under `body.speed_limit` (an
    unknown top key and a bad op at their own paths), and not one request."""
    rows: list[dict[str, Any]] = [{"task_id": "t0", "op": "speed-limit",
                                   "body": {"speed_limit": bad}} for bad, _ in BAD_RULES]
    rows.append({"task_id": "t0", "op": "speed-limit", "body": {"speed_limits": []}})
    rows.append({"task_id": "t0", "op": "speed-limits", "body": {"speed_limit": []}})
    # one valid line of another task: a file of invalid lines alone is refused whole (exit 2)
    rows.append({"task_id": "t1", "op": "speed-limit", "body": {"speed_limit": []}})
    out = tmp_path / "out.jsonl"
    fleet = fleet_of(tmp_path, 2)
    with simulator_thread(fleet=fleet) as thread:
        code = run(write_jsonl(tmp_path / "in.jsonl", rows), "--endpoint", thread.handle.url,
                   "--out", out)
        received = thread.handle.counts("t0").received
    assert code == 1
    assert received == 0
    records = sorted(read(out), key=lambda r: r["line"])
    assert records.pop()["status"] == "succeeded"
    assert [r["status"] for r in records] == ["invalid"] * len(records)
    assert [r["attempts"] for r in records] == [0] * len(records)
    for record, (_, path) in zip(records, BAD_RULES, strict=False):
        paths = [e["path"] for e in record["errors"]]
        assert paths, record
        assert all(p.startswith("body.speed_limit") for p in paths), record
        assert any(p.startswith(path) for p in paths), (path, record["errors"])
    assert next(e["path"] for e in records[-2]["errors"]).startswith("body.speed_limits")
    assert [e["path"] for e in records[-1]["errors"]] == ["op"]


def test_a_rules_option_that_does_not_parse_exits_2_with_the_position(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": "t0"}])
    code = run(source, "--simulate", "--out", tmp_path / "out.jsonl", "--op", "speed-limit",
               "--rules", "00:00-07:59=1000;08:00-19:59=100")
    assert code == 2
    assert "at character 17" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_fleet_run_skip_unchanged_verify_and_undo_restore_every_task(tmp_path: Path) -> None:
    """120 tasks, a third with no rules, a third already with the target rules (another order,
    50.0 for 50), a third with other rules. `run --op speed-limit --rules ...
    --skip-unchanged --verify --undo-file`: the third already right is `unchanged` (a GET, no
    POST), the rest written and read back; then the undo file puts 100 % of the tasks back
    (an empty list included), and a second undo run changes nothing."""
    n = 120
    fleet = fleet_of(tmp_path, n)
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": f"t{i}", "ref": f"r{i}"}
                                                  for i in range(n)])
    out, undo = tmp_path / "out.jsonl", tmp_path / "undo.jsonl"
    with simulator_thread(fleet=fleet) as thread:
        before = rules(thread, fleet, n)
        code = run(source, "--endpoint", thread.handle.url, "--out", out, "--op", "speed-limit",
                   "--rules", NIGHT, "--skip-unchanged", "--verify", "--undo-file", undo)
        assert code == 0
        after = rules(thread, fleet, n)
        assert all(same_rules(after[f"t{i}"], TARGET) for i in range(n))
        fields = thread.call(lambda: fleet.show("t0"))
        assert fields is not None
        assert fields["speed_limit"] == 10  # the task's flat speed_limit is another thing
        records = {r["task_id"]: r for r in read(out)}
        assert {r["op"] for r in records.values()} == {"speed-limit"}
        for i in range(n):
            record = records[f"t{i}"]
            if i % 3 == 1:
                assert (record["status"], record["error_code"], record["attempts"],
                        record["reads"]) == ("skipped", "unchanged", 0, 1)
            else:  # GET, POST, GET
                assert (record["status"], record["attempts"], record["reads"]) == (
                    "succeeded", 1, 2), record
                assert record["previous"] == {"speed_limit": before[f"t{i}"]}
        # report --input judges the fleet file's lines as the run planned them
        assert main(["report", str(out), "--input", str(source), "--op", "speed-limit",
                     "--rules", NIGHT]) == 0
        assert main(["report", str(out), "--input", str(source)]) == 2  # update lines, no body
        lines = {r["task_id"]: r for r in read_jsonl(undo)}
        assert len(lines) == n - n // 3
        assert lines["t0"] == {"task_id": "t0", "op": "speed-limit", "ref": "r0",
                               "body": {"speed_limit": []},
                               "expect": {"speed_limit": TARGET}}
        assert run(undo, "--endpoint", thread.handle.url, "--out", tmp_path / "back.jsonl") == 0
        restored = rules(thread, fleet, n)
        assert all(same_rules(restored[t], before[t]) for t in before)
        assert restored["t0"] == []
        assert restored["t2"] == OTHER
        # the undo's `expect` now fails to hold, but each task is as the undo wants: unchanged
        assert run(undo, "--endpoint", thread.handle.url, "--out", tmp_path / "again.jsonl") == 0
        assert {r["error_code"] for r in read(tmp_path / "again.jsonl")} == {"unchanged"}


def test_verify_fails_a_write_the_task_does_not_show(tmp_path: Path) -> None:
    """--verify reads the rules back; a task whose rules differ (another writer) fails with
    verify_mismatch. Simulated with a line whose expect holds and a second writer between."""
    fleet = fleet_of(tmp_path, 1)
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"task_id": "t0", "op": "speed-limit", "body": {"speed_limit": OTHER}}])
    with simulator_thread(fleet=fleet) as thread:
        code = run(source, "--endpoint", thread.handle.url, "--out", tmp_path / "out.jsonl",
                   "--verify")
        assert code == 0
        [record] = read(tmp_path / "out.jsonl")
        assert (record["status"], record["attempts"], record["reads"], record["op"]) == (
            "succeeded", 1, 1, "speed-limit")
        assert thread.call(lambda: fleet.rules("t0")) == OTHER


def test_lines_of_one_task_are_sent_in_file_order_whatever_their_op(tmp_path: Path) -> None:
    """update, speed-limit, update, speed-limit for each task: the service sees them in that
    order (per-task order across ops), and each task ends as its last lines say."""
    n = 8
    fleet = fleet_of(tmp_path, n)
    rows: list[dict[str, Any]] = []
    for step in range(4):
        for i in range(n):
            if step % 2:
                rows.append({"task_id": f"t{i}", "op": "speed-limit",
                             "body": {"speed_limit": [{"start": "00:00", "end": "01:00",
                                                       "speed": step}]}})
            else:
                rows.append({"task_id": f"t{i}", "body": {"speed_limit": 100 + step}})
    with simulator_thread(fleet=fleet, log_size=1000) as thread:
        thread.call(lambda: thread.handle.faults.reconfigure(
            FaultConfig(latency_ms=(0.0, 20.0), seed=3)))
        code = run(write_jsonl(tmp_path / "in.jsonl", rows), "--endpoint", thread.handle.url,
                   "--out", tmp_path / "out.jsonl", "--concurrency", "8")
        assert code == 0
        seen = thread.call(lambda: [(r.task_id, r.method, r.body)
                                    for r in thread.handle.requests])
        for i in range(n):
            mine = [(method, orjson.loads(body)) for task, method, body in seen
                    if task == f"t{i}"]
            assert [m for m, _ in mine] == ["PUT", "POST", "PUT", "POST"]
            assert [b["speed_limit"] for _, b in mine][::2] == [100, 102]
            assert thread.call(lambda i=i: fleet.rules(f"t{i}")) == [
                {"start": "00:00", "end": "01:00", "speed": 3}]
            view = thread.call(lambda i=i: fleet.show(f"t{i}"))
            assert view is not None
            assert view["speed_limit"] == 102


def test_resume_after_sigkill_with_mixed_ops(tmp_path: Path) -> None:
    """A run of update and speed-limit lines, SIGKILLed half-way, then `--resume`: every line
    ends done, the lines done before the kill are not sent again (`already_succeeded`), and
    every task ends as its lines say."""
    n = 60
    fleet = fleet_of(tmp_path, n)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rows.append({"task_id": f"t{i}", "body": {"speed_limit": 500 + i}})
        rows.append({"task_id": f"t{i}", "op": "speed-limit", "body": rules_option(NIGHT)})
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with simulator_thread(fleet=fleet) as thread:
        sim = thread.handle
        thread.call(lambda: sim.faults.reconfigure(FaultConfig(latency_ms=(20.0, 40.0), seed=5)))
        args = ["run", str(source), "--endpoint", sim.url, "--out", str(out), "--rate", "0",
                "--concurrency", "8", "--log-format", "json"]
        kill_when(lambda: out.exists() and len(read(out)) >= n // 2, *args,
                  env={"BATCHSMS_AUTH_TOKEN": TOKEN})
        done_first = {r["line"] for r in read(out) if r["status"] == "succeeded"}
        assert 0 < len(done_first) < 2 * n, "the kill must land half-way"
        assert {r["op"] for r in read(out)} <= {"update", "speed-limit"}
        thread.call(lambda: sim.faults.reconfigure(FaultConfig()))
        second = batchsms(*args, "--resume", env={"BATCHSMS_AUTH_TOKEN": TOKEN})
        assert second.returncode == 0, second.stderr
        latest = {r["line"]: r for r in read(out)}
        assert len(latest) == 2 * n
        resumed = {line for line, r in latest.items() if r["error_code"] == "already_succeeded"}
        assert resumed
        assert resumed <= done_first
        assert all(r["status"] in ("succeeded", "skipped") for r in latest.values())
        assert all(latest[line]["op"] == ("update" if line % 2 else "speed-limit")
                   for line in latest)
        for i in range(n):
            assert same_rules(thread.call(lambda i=i: fleet.rules(f"t{i}")) or [], TARGET)
            view = thread.call(lambda i=i: fleet.show(f"t{i}"))
            assert view is not None
            assert view["speed_limit"] == 500 + i


def test_plan_shows_the_rules_as_one_field(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --op speed-limit --rules`: ShowsSpeedLimits per task, `changes.speed_limit =
    {from, to}` for the tasks with no or other rules, already as wanted for the target rules
    in another order; a later line for the same task is judged against the list the earlier
    one leaves (the whole list replaced); an update line of the task is judged apart; a
    conflicting `expect` is a conflict. Nothing is written."""
    n = 3
    fleet = fleet_of(tmp_path, n)
    rows: list[dict[str, Any]] = [{"task_id": f"t{i}"} for i in range(n)]
    rows.append({"task_id": "t0", "op": "speed-limit", "body": {"speed_limit": OTHER}})
    rows.append({"task_id": "t0", "op": "update", "body": {"speed_limit": 10}})
    rows.append({"task_id": "t2", "op": "speed-limit", "body": {"speed_limit": []},
                 "expect": {"speed_limit": []}})
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with simulator_thread(fleet=fleet, log_size=100) as thread:
        code = main(["plan", str(source), "--endpoint", thread.handle.url, "--json",
                     "--rate", "0", "--op", "speed-limit", "--rules", NIGHT])
        methods = thread.call(lambda: {r.method for r in thread.handle.requests})
    assert code == 1  # the conflict
    assert methods == {"GET"}
    entries = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["verdict"] for e in entries] == [
        "would change", "already as wanted", "would change", "would change",
        "already as wanted", "conflict"]
    assert entries[0]["changes"] == {"speed_limit": {"from": [], "to": TARGET}}
    assert entries[2]["changes"] == {"speed_limit": {"from": OTHER, "to": TARGET}}
    assert entries[3]["changes"] == {"speed_limit": {"from": TARGET, "to": OTHER}}
    assert entries[4]["unchanged"] == ["speed_limit"]
    # t2's rules as line 3 leaves them (the projection), not as expected
    assert entries[5]["conflicts"]["speed_limit"] == {"expected": [], "found": TARGET}


def test_checked_speed_reports_bad_reads_conflicts_and_mismatches(tmp_path: Path) -> None:
    """The speed-limit handler on its own: an answer that is not a rule list fails the line
    (`bad_answer`, no write); a conflicting `expect` writes nothing; a read-back that differs
    is `verify_mismatch`."""
    import anyio

    from batchsms.changes.guarded_put import WriteChecks, checked_put
    from batchsms.engine.build import EngineSettings, build_sender
    from batchsms.journal.outcomes import Outcome
    from batchsms.lines.bodies import Planned, Planner
    from batchsms.lines.reader import Line
    from tests.servers import Answer, scripted_server

    def planned(body: Any, expect: Any = None) -> Planned:
        item = Planner().plan(Line(1, "t0", None, body, expect, "speed-limit"))
        assert isinstance(item, Planned)
        return item

    async def handle(url: str, checks: WriteChecks, item: Planned) -> Outcome:
        from batchsms.transport.client import SmsClient
        async with SmsClient(url, None, concurrency=1, timeout=5) as client:
            sender = build_sender(client, EngineSettings(rate=0, concurrency=1, max_attempts=1))
            return await checked_put("r1", checks, None)(item, sender)

    target = {"speed_limit": TARGET}
    with scripted_server(Answer(200, body={"speed_limit": "no"})) as server:
        out = anyio.run(handle, server.url, WriteChecks(skip_unchanged=True), planned(target))
        assert (out.status, out.error_code, out.attempts, out.reads) == (
            "failed", "bad_answer", 0, 1)
        assert [r.method for r in server.received] == ["GET"]
    with scripted_server(Answer(200, body={"speed_limit": OTHER})) as server:
        out = anyio.run(handle, server.url, WriteChecks(), planned(target, {"speed_limit": []}))
        assert (out.status, out.error_code) == ("skipped", "conflict")
        assert [r.method for r in server.received] == ["GET"]
        out = anyio.run(handle, server.url, WriteChecks(verify=True), planned(target))
        assert (out.status, out.error_code, out.attempts, out.reads) == (
            "failed", "verify_mismatch", 1, 1)
        assert "speed_limit: sent" in (out.error_msg or "")


def test_the_library_runs_speed_limit_updates() -> None:
    """`Client.run(updates, op="speed-limit")`: updates without op are UpdateSpeed; one that
    names op update stays an UpdateTask (docs/reference.md §12)."""
    import anyio

    import batchsms

    async def go() -> list[batchsms.Outcome]:
        async with batchsms.Client(simulate=True, rate=0) as client:
            updates = [{"task_id": "t1", "body": rules_option(NIGHT)},
                       {"task_id": "t2", "op": "update", "body": {"speed_limit": 5}},
                       {"task_id": "t3", "body": {"speed_limit": 5}}]
            return [o async for o in client.run(updates, op="speed-limit")]

    outcomes = sorted(anyio.run(go), key=lambda o: o.line)
    assert [(o.op, o.status) for o in outcomes] == [
        ("speed-limit", "succeeded"), ("update", "succeeded"), ("speed-limit", "invalid")]
