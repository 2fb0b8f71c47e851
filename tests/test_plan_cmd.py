"""`batchsms plan` against the simulator: differences, totals, exit codes, and no write ever."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.cli import main
from batchsms.commands.plan import PlanEntry, Verdict, plan_async
from batchsms.config import RunConfig
from batchsms.credentials import load_credentials
from batchsms.plan import checked_lines
from batchsms.signing import authenticator
from batchsms.simulator import ExpectedCredentials, Fleet, running
from tests.jsonl import write_jsonl

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
