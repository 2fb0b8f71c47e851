"""`batchsms plan` against the simulator: differences, totals, exit codes, and no write ever."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsms.changes import preview
from batchsms.changes.preview import PROJECTED_TASKS, PlanEntry, Verdict
from batchsms.changes.readback import Read
from batchsms.cli import main
from batchsms.commands import plan as plan_module
from batchsms.commands.config import RunConfig
from batchsms.commands.plan import plan_async
from batchsms.lines.bodies import checked_lines
from batchsms.simulator import ExpectedCredentials, Fleet, running
from batchsms.transport.credentials import load_credentials
from batchsms.transport.signing import authenticator
from tests.jsonl import write_jsonl
from tests.processes import Here

FLEET = [
    {"id": "a", "name": "web-01", "speed_limit": 100,
     "target_server": {"name": "web-01-t", "disks": [{"name": "/dev/vda", "size": 10}]}},
    {"id": "b", "name": "web-02", "speed_limit": 200},
    {"id": "c", "name": "web-03", "speed_limit": 300},
]
INPUT = [
    {"task_id": "a", "body": {"speed_limit": 200}, "ref": "one"},
    {"task_id": "b", "body": {"speed_limit": 200, "name": "web-02"}},
    {"task_id": "c", "body": {"use_ipv6": True}},
    {"task_id": "missing", "body": {"speed_limit": 5}},
    {"task_id": "c", "body": {"speedlimit": 5}},
    {"task_id": "a", "body": {"speed_limit": 200,
                              "target_server": {"disks": [{"name": "/dev/vda", "size": 20}]}}},
]


async def plan(tmp_path: Path, *, credentials: ExpectedCredentials | None = None,
               env: dict[str, str] | None = None) -> tuple[list[PlanEntry], str | None, Any]:
    fleet = Fleet.from_jsonl(write_jsonl(tmp_path / "fleet.jsonl", FLEET))
    config = RunConfig(input=str(write_jsonl(tmp_path / "in.jsonl", INPUT)), rate=0,
                       concurrency=4)
    auth = authenticator(load_credentials(env)) if env else None
    entries: list[PlanEntry] = []
    async with running(fleet=fleet, credentials=credentials) as sim:
        stopped = await plan_async(config, checked_lines(config.input, {}), sim.url, auth,
                                   True, entries.append)
    return entries, stopped, sim


@pytest.mark.anyio
async def test_plan_on_a_mixed_fleet(tmp_path: Path) -> None:
    """Each kind of line gets its verdict and exact difference; only GETs reach the service."""
    entries, stopped, sim = await plan(tmp_path)
    assert stopped is None
    data = [orjson.loads(e.to_json()) for e in entries]
    assert [d["line"] for d in data] == [1, 2, 3, 4, 5, 6]
    assert [e.verdict for e in entries] == [Verdict.CHANGE, Verdict.AS_WANTED,
                                            Verdict.NOT_COMPARABLE, Verdict.FAIL, Verdict.FAIL,
                                            Verdict.CHANGE]
    assert data[0]["changes"] == {"speed_limit": {"from": 100, "to": 200}}
    assert data[0]["ref"] == "one"
    assert data[1]["unchanged"] == ["name", "speed_limit"]
    assert data[2]["unreadable"] == ["use_ipv6"]
    assert data[3]["error"]["http_status"] == 404
    assert data[3]["error"]["code"] == "SMS.1801"
    assert data[4]["error"]["code"] == "validation"
    # line 6 is compared with task a as line 1 would leave it: speed_limit already 200
    assert data[5]["unchanged"] == ["speed_limit"]
    assert data[5]["changes"] == {"target_server.disks[0].size": {"from": 10, "to": 20}}
    methods = [r.method for r in sim.requests]
    assert set(methods) == {"GET"}
    assert sorted(r.task_id for r in sim.requests) == ["a", "b", "c", "missing"]
    assert sim.stats.applied == 0


@pytest.mark.anyio
async def test_plan_stops_after_three_rejections(tmp_path: Path) -> None:
    """A wrong token: three reads, one at a time, then every line fails as aborted."""
    entries, stopped, sim = await plan(tmp_path, credentials=ExpectedCredentials(token="right"),
                                       env={"BATCHSMS_AUTH_TOKEN": "wrong"})
    assert stopped is not None
    assert "rejected" in stopped
    assert len(sim.requests) == 3
    assert all(e.verdict is Verdict.FAIL for e in entries)
    assert len(entries) == len(INPUT)


def test_plan_command_text_and_exit_code(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --simulate`: one block per line, the totals, and exit 1 when a line would fail."""
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:3])
    assert main(["plan", str(source), "--simulate", "--rate", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^line 1 a \(one\): would change\n  speed_limit: \d+ -> 200$", out, re.M)
    assert "line 3 c: not comparable (cannot be read back: use_ipv6)" in out
    assert re.search(r"^3 lines: \d would change, \d already as wanted, 1 not comparable, "
                     r"0 would fail$", out, re.M)
    source = write_jsonl(tmp_path / "bad.jsonl", INPUT[4:5])
    assert main(["plan", str(source), "--simulate", "--json"]) == 1
    captured = capsys.readouterr()
    assert orjson.loads(captured.out)["verdict"] == "would fail"
    assert "1 would fail" in captured.err


def test_plan_refuses_to_start_on_an_unreadable_input(tmp_path: Path) -> None:
    """No input: exit 2 before anything is started."""
    assert main(["plan", str(tmp_path / "nope.jsonl"), "--simulate"]) == 2


async def plan_rows(tmp_path: Path, fleet_rows: list[dict[str, Any]], rows: list[dict[str, Any]],
                    *, concurrency: int = 4) -> tuple[list[PlanEntry], Any]:
    """Plan `rows` against a simulator serving `fleet_rows` (an open fleet when empty)."""
    fleet = (Fleet.from_jsonl(write_jsonl(tmp_path / "fleet.jsonl", fleet_rows)) if fleet_rows
             else Fleet.open())
    config = RunConfig(input=str(write_jsonl(tmp_path / "in.jsonl", rows)), rate=0,
                       concurrency=concurrency)
    entries: list[PlanEntry] = []
    async with running(fleet=fleet) as sim:
        stopped = await plan_async(config, checked_lines(config.input, {}), sim.url, None,
                                   True, entries.append)
    assert stopped is None
    return entries, sim


@pytest.mark.anyio
async def test_a_second_line_is_judged_through_the_readable_mapping(tmp_path: Path) -> None:
    """Issue 18 item 10 (i): two lines setting `enterprise_project` (ShowTask's
    `enterprise_project_id`): the second is already as wanted once the first is applied, as
    `run --skip-unchanged` finds it (one PUT). Before, the projection merged the body's
    `enterprise_project` into the view, and the comparison read `enterprise_project_id`."""
    project = "b7a1c0de-0000-4000-8000-00000000e009"
    entries, _ = await plan_rows(
        tmp_path, [{"id": "a", "enterprise_project_id": "0", "name": "web-01"}],
        [{"task_id": "a", "body": {"enterprise_project": project}},
         {"task_id": "a", "body": {"enterprise_project": project, "name": "web-01"}},
         {"task_id": "a", "body": {"enterprise_project": "0"}}])
    assert [e.verdict for e in entries] == [Verdict.CHANGE, Verdict.AS_WANTED, Verdict.CHANGE]
    assert entries[0].diff is not None
    assert entries[0].diff.changes_json() == {"enterprise_project": {"from": "0", "to": project}}
    assert entries[1].diff is not None
    assert entries[1].diff.unchanged == ("enterprise_project", "name")
    assert entries[2].diff is not None
    assert entries[2].diff.changes_json() == {"enterprise_project": {"from": project, "to": "0"}}


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_task_seen_again_just_past_the_cache_is_not_lost(tmp_path: Path) -> None:
    """Issue 18 item 10 (ii), as reported: `PROJECTED_TASKS` + 2 tasks, then the second again.
    Its projection was dropped from the cache by the lines before it in the same batch, after
    the batch had decided not to read it: KeyError. Now it is kept while its batch needs it."""
    n = PROJECTED_TASKS + 2
    rows = [{"task_id": f"t{i}", "body": {"speed_limit": 7}} for i in range(1, n + 1)]
    rows.append({"task_id": "t2", "body": {"speed_limit": 7}})
    entries, sim = await plan_rows(tmp_path, [], rows, concurrency=4)
    assert [e.line for e in entries] == list(range(1, n + 2))
    assert entries[-1].verdict is Verdict.AS_WANTED  # as line 2 leaves it
    assert entries[-1].diff is not None
    assert entries[-1].diff.unchanged == ("speed_limit",)
    assert sim.stats.received == n  # each task read once


@pytest.mark.anyio
async def test_the_cache_keeps_what_its_batch_needs_and_stays_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 10 (ii) with a cache of 4 tasks and batches of 4 lines: t1..t4, then t5, t6, t2, t7
    (t2 was cached when its batch began, and t5, t6 pushed it out before its line: KeyError
    before). Then t1 again, long out of the cache: read again (the cache is bounded), and judged
    as the task is, not as line 1 left it in plan's head."""
    monkeypatch.setattr(preview, "PROJECTED_TASKS", 4)
    order = ["t1", "t2", "t3", "t4", "t5", "t6", "t2", "t7", "t1"]
    rows = [{"task_id": t, "body": {"speed_limit": 7}} for t in order]
    fleet = [{"id": f"t{i}", "speed_limit": 1} for i in range(1, 8)]
    entries, sim = await plan_rows(tmp_path, fleet, rows, concurrency=2)
    assert [e.line for e in entries] == list(range(1, 10))
    assert [e.verdict for e in entries] == [Verdict.CHANGE] * 6 + [
        Verdict.AS_WANTED, Verdict.CHANGE, Verdict.CHANGE]
    reads = sorted(r.task_id for r in sim.requests)
    assert reads == ["t1", "t1", "t2", "t3", "t4", "t5", "t6", "t7"]  # t1 twice


class FleetReader:
    """The `Reader` plan uses, answered from a simulator `Fleet` in this process (no HTTP: the
    cache's logic alone is under test), counting reads."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.reads = 0
        self.stopped: str | None = None

    async def read(self, task_id: str) -> Read:
        self.reads += 1
        view = self.fleet.show(task_id)
        return Read(view) if view is not None else Read(None, 1, 404, None, "SMS.1801", "no")


def _plan_with(rows: list[tuple[str, int]], keep: int, concurrency: int,
               path: Path) -> tuple[list[tuple[str, tuple[str, ...]]], int]:
    source = write_jsonl(path, [{"task_id": t, "body": {"speed_limit": v}} for t, v in rows])
    reader = FleetReader(Fleet.from_jsonl(write_jsonl(
        path.with_suffix(".fleet"), [{"id": f"t{i}", "speed_limit": 0} for i in range(4)])))

    async def go() -> list[PlanEntry]:
        return [e async for e in preview.plan_entries(
            checked_lines(str(source), {}), reader, concurrency=concurrency, keep=keep)]

    entries = anyio.run(go)
    return [(e.verdict.value, e.diff.unchanged if e.diff else ()) for e in entries], reader.reads


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["t0", "t1", "t2", "t3", "gone"]),
                          st.sampled_from([0, 5])), min_size=1, max_size=14),
       st.integers(1, 3), st.integers(1, 3))
def test_a_small_cache_judges_every_line_as_an_unbounded_one(
        rows: list[tuple[str, int]], keep: int, concurrency: int) -> None:
    """Whatever the cache's size and the batch size: no line is lost (item 10 (ii)); a task
    out of the cache is read again, and since plan never writes, judged the same; a task still
    in the cache is not read again."""
    with tempfile.TemporaryDirectory() as tmp:
        small, reads = _plan_with(rows, keep, concurrency, Path(tmp) / "in.jsonl")
        large, fewest = _plan_with(rows, 10**6, concurrency, Path(tmp) / "in.jsonl")
    # a later line of a task is judged against the projection, which a re-read does not have:
    # compare only the lines a re-read cannot change (the first line of each task) and counts
    assert len(small) == len(large) == len(rows)
    firsts = {}
    for i, (task_id, _) in enumerate(rows):
        firsts.setdefault(task_id, i)
    assert [small[i] for i in firsts.values()] == [large[i] for i in firsts.values()]
    assert fewest == len(firsts)
    assert reads >= fewest


def test_plan_tells_its_progress_on_stderr_unless_quiet(tmp_path: Path, here: Here,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23: a long plan piped to a file is not silent: `plan.progress` on stderr (lines
    done of the total, rate, ETA), as JSON with `--log-format json`; `--quiet` drops it."""
    monkeypatch.setattr(plan_module, "PROGRESS_EVERY", 0.0)
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": f"t{i}", "body": {"speed_limit": i}}
                                                 for i in range(5)])
    told = here("plan", str(source), "--simulate", "--rate", "0", "--json",
                "--log-format", "json")
    assert told.returncode == 0, told.stderr
    events = [orjson.loads(x) for x in told.stderr.splitlines() if x.startswith("{")]
    progress = [e for e in events if e["event"] == "plan.progress"]
    assert [e["done"] for e in progress] == [1, 2, 3, 4, 5]
    assert progress[-1]["total"] == 5
    assert len(told.stdout.splitlines()) == 5  # stdout is the plan alone
    quiet = here("plan", str(source), "--simulate", "--rate", "0", "--json", "--quiet")
    assert "plan.progress" not in quiet.stderr
