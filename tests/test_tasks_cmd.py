"""`batchsms tasks`: ListTasks paging and filters against the simulator, and the fleet pipe."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchsms.simulator.access import ExpectedCredentials
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.fleet import Fleet
from batchsms.simulator.server import running
from batchsms.simulator.threaded import serve_in_thread
from tests.processes import InProcess

TOKEN = "tasks-test-token"


@pytest.fixture
def simulator() -> Iterator[str]:
    """`batchsms simulator --generate 450 --seed 7` expecting TOKEN, served from a thread of
    this process (a child took ~0.4 s of CPU a test to start; test_simulator_cli.py is where
    the command's own options and environment are tested)."""
    with serve_in_thread(lambda: running(
            fleet=Fleet.generate(450), faults=FaultConfig(seed=7), log_size=0,
            credentials=ExpectedCredentials(token=TOKEN))) as sim:
        yield sim.value.url


def batchsms(cli: InProcess, *args: str,
             token: str = TOKEN) -> subprocess.CompletedProcess[bytes]:
    """In this process: the listing is what is tested, not the process boundary."""
    return cli(*args, env={"BATCHSMS_AUTH_TOKEN": token})


def test_lists_every_task_over_several_pages(simulator: str, cli: InProcess) -> None:
    result = batchsms(cli, "tasks", "--endpoint", simulator, "--page-size", "100", "--rate", "0")
    assert result.returncode == 0, result.stderr
    envelopes = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(envelopes) == 450
    assert len({e["task_id"] for e in envelopes}) == 450
    assert all(set(e) == {"task_id", "ref"} and e["ref"] for e in envelopes)


def test_filters_are_sent_and_applied(simulator: str, tmp_path: Path, cli: InProcess) -> None:
    listing = batchsms(cli, "tasks", "--endpoint", simulator, "--rate", "0")
    everything = [orjson.loads(line) for line in listing.stdout.splitlines()]
    out = tmp_path / "running.jsonl"
    result = batchsms(cli, "tasks", "--endpoint", simulator, "--state", "RUNNING", "--page-size",
                      "7", "--out", str(out), "--rate", "0")
    assert result.returncode == 0, result.stderr
    running = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert 7 < len(running) < 450  # more than one page, fewer than all
    one = everything[3]
    by_id = batchsms(cli, "tasks", "--endpoint", simulator, "--id", one["task_id"], "--rate", "0")
    assert [orjson.loads(line) for line in by_id.stdout.splitlines()] == [one]


def test_fleet_pipe_sets_speed_limit_on_every_listed_task(simulator: str,
                                                          tmp_path: Path, cli: InProcess) -> None:
    fleet = tmp_path / "fleet.jsonl"
    assert batchsms(cli, "tasks", "--endpoint", simulator, "--state", "RUNNING", "--out",
                    str(fleet), "--rate", "0").returncode == 0
    out = tmp_path / "out.jsonl"
    result = batchsms(cli, "run", str(fleet), "--endpoint", simulator, "--set", "speed_limit=200",
                      "--out", str(out), "--rate", "0", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {r["status"] for r in records} == {"succeeded"}
    listed = {orjson.loads(line)["task_id"] for line in fleet.read_bytes().splitlines()}
    assert {r["task_id"] for r in records} == listed


def test_rejected_credentials_exit_3_and_write_no_file(simulator: str, tmp_path: Path,
                                                       cli: InProcess) -> None:
    out = tmp_path / "fleet.jsonl"
    result = batchsms(cli, "tasks", "--endpoint", simulator, "--out", str(out), token="wrong")
    assert result.returncode == 3
    assert b"401" in result.stderr
    assert b"wrong" not in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_source_server_id_filter(simulator: str, cli: InProcess) -> None:
    """--source-server-id selects the tasks of one source server (ListTasks' filter)."""
    import urllib.request

    request = urllib.request.Request(f"{simulator}/v3/tasks?limit=1&offset=5",
                                     headers={"X-Auth-Token": TOKEN})
    with urllib.request.urlopen(request, timeout=10) as answer:
        task = orjson.loads(answer.read())["tasks"][0]
    result = batchsms(cli, "tasks", "--endpoint", simulator, "--source-server-id",
                      task["source_server"]["id"], "--rate", "0")
    assert result.returncode == 0, result.stderr
    listed = [orjson.loads(line)["task_id"] for line in result.stdout.splitlines()]
    assert task["id"] in listed
    assert 0 < len(listed) < 450


NIGHT = "00:00-07:59=1000,08:00-19:59=100@50,20:00-23:59=1000"


def test_tasks_writes_speed_limit_lines_for_the_fleet(simulator: str, tmp_path: Path,
                                                      cli: InProcess) -> None:
    """`tasks --op speed-limit --rules` (or `--set speed_limit=[...]`): each listed task a
    speed-limit line with the rules as its body; the file runs as it is."""
    from batchsms.lines.speed_rules import rules_option

    fleet = tmp_path / "fleet.jsonl"
    result = batchsms(cli, "tasks", "--endpoint", simulator, "--state", "RUNNING", "--out",
                      str(fleet), "--rate", "0", "--op", "speed-limit", "--rules", NIGHT)
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in fleet.read_bytes().splitlines()]
    assert lines
    assert all(list(line) == ["task_id", "op", "ref", "body"] for line in lines)
    assert {orjson.dumps(line["body"]) for line in lines} == {orjson.dumps(rules_option(NIGHT))}
    same = batchsms(cli, "tasks", "--endpoint", simulator, "--state", "RUNNING", "--rate", "0",
                    "--op", "speed-limit", "--set",
                    "speed_limit=" + orjson.dumps(rules_option(NIGHT)["speed_limit"]).decode())
    assert [orjson.loads(line) for line in same.stdout.splitlines()] == lines
    out = tmp_path / "out.jsonl"
    ran = batchsms(cli, "run", str(fleet), "--endpoint", simulator, "--out", str(out),
                   "--rate", "0", "--log-format", "json", "--verify")
    assert ran.returncode == 0, ran.stderr
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {(r["status"], r["op"]) for r in records} == {("succeeded", "speed-limit")}


@pytest.mark.parametrize(("args", "message"), [
    (["--op", "speed-limit"], "give the rules"),
    (["--rules", NIGHT], "add --op speed-limit"),
    (["--op", "speed-limit", "--rules", "00:00-07:59"], "at character 12"),
    (["--op", "speed-limit", "--set", "speed_limit=5"], "invalid speed-limit body"),
])
def test_tasks_refuses_a_fleet_without_sendable_rules(args: list[str], message: str,
                                                      cli: InProcess) -> None:
    result = batchsms(cli, "tasks", "--endpoint", "http://127.0.0.1:9", *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()


def test_log_format_json_and_quiet(simulator: str, cli: InProcess) -> None:
    """Issue 23: `tasks --log-format json` ends with a `tasks.finished` event, not text;
    `--quiet` drops the count; the listing on stdout is the same."""
    as_json = batchsms(cli, "tasks", "--endpoint", simulator, "--rate", "0",
                       "--log-format", "json")
    assert as_json.returncode == 0, as_json.stderr
    [event] = [orjson.loads(x) for x in as_json.stderr.splitlines()]
    assert (event["event"], event["tasks"]) == ("tasks.finished", 450)
    quiet = batchsms(cli, "tasks", "--endpoint", simulator, "--rate", "0", "--quiet")
    assert quiet.returncode == 0
    assert quiet.stderr == b""
    assert quiet.stdout == as_json.stdout


def test_a_failed_listing_is_one_json_event(simulator: str, cli: InProcess) -> None:
    result = batchsms(cli, "tasks", "--endpoint", simulator, "--rate", "0", "--log-format",
                      "json", token="wrong-token")
    assert result.returncode == 3
    events = [orjson.loads(x) for x in result.stderr.splitlines()]
    assert events[-1]["event"] == "tasks.failed"
    assert "batchsms:" not in result.stderr.decode()
