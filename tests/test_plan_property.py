"""Property: `plan` says what `run --skip-unchanged` does, line for line, on the same fleet.

Hypothesis draws a small fleet (a `--fleet`-style JSONL of a few tasks with drawn speed limits,
names, enterprise projects, migration IPs, target and clone server names, in source states that
allow a clone_server update) and an input of a few lines over those tasks (repeated tasks,
overlapping readable fields, unreadable ones, invalid lines, an unknown task). `plan --json`
runs against a simulator serving that fleet, then `run --skip-unchanged` against a simulator
serving a fresh copy of it, both in this process (the `cli` fixture) over loopback. Then:

- the lines plan says "would change" or "not comparable" (something a read cannot rule out) are
  exactly the lines run sent: each `succeeded` after a read and a PUT, and the simulator
  received that many PUTs per task;
- "already as wanted" are exactly run's `skipped`/`unchanged`;
- "would fail" are exactly run's failures (`invalid`, or `failed` on the read, no PUT);
- every task ends with the readable fields plan projected for it (`diff.applied` over its
  valid lines in file order).

The default suite runs a small budget; `-m slow` a larger one. Counterexamples found are kept
as plain regression tests below the property.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchsms.lines.bodies import Planned, checked_lines
from batchsms.lines.diff import applied
from batchsms.lines.readable import READABLE
from batchsms.simulator import Fleet
from batchsms.simulator.threaded import simulator_in_thread
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import InProcess

pytestmark = pytest.mark.usefixtures("loopback_only")

TOKEN = {"BATCHSMS_AUTH_TOKEN": "plan-property-token"}
TASKS = ("t0", "t1", "t2")
SPEEDS = (0, 100, 200)
NAMES = ("web-01", "web-02")
PROJECTS = ("0", "b7a1c0de-0000-4000-8000-00000000e001")
IPS = ("192.168.0.1", "192.168.0.2")
TARGETS = ("target-a", "target-b")
CLONES = ("clone-a", "clone-b")
SOURCE_STATES = ("syncing", "stopped", "finished", "error")  # Table 3 allows clone_server

task = st.fixed_dictionaries({
    "speed_limit": st.sampled_from(SPEEDS), "name": st.sampled_from(NAMES),
    "enterprise_project_id": st.sampled_from(PROJECTS), "migration_ip": st.sampled_from(IPS),
    "target_server": st.fixed_dictionaries({"name": st.sampled_from(TARGETS)}),
    "source_server": st.fixed_dictionaries({"state": st.sampled_from(SOURCE_STATES)}),
    "clone_server": st.none() | st.fixed_dictionaries({"name": st.sampled_from(CLONES)}),
})
fleets = st.tuples(*(task for _ in TASKS)).map(
    lambda drawn: [{"id": task_id, **t} for task_id, t in zip(TASKS, drawn, strict=True)])

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "speed_limit": st.sampled_from(SPEEDS), "name": st.sampled_from(NAMES),
    "enterprise_project": st.sampled_from(PROJECTS), "migration_ip": st.sampled_from(IPS),
    "target_server": st.fixed_dictionaries({}, optional={"name": st.sampled_from(TARGETS)}),
    "clone_server": st.fixed_dictionaries({"name": st.sampled_from(CLONES)}),
    "use_ipv6": st.just(False),  # readable by no ShowTask: "not comparable", always sent
}
# one to three fields, so that a later line of a task is often already as wanted
body = st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys}))
# {} is invalid too (nothing to update); start_target_server is no UpdateTask field
invalid = st.just({}) | body.map(lambda b: {**b, "start_target_server": True})
line = st.fixed_dictionaries({
    "task_id": st.sampled_from(("t0", "t0", "t1", "t2", "unknown")),  # t0 often repeated
    "body": st.one_of(body, body, body, invalid),
})
# a few distinct lines, then an input drawn from them: the same task and body come back
inputs = st.lists(line, min_size=1, max_size=5).flatmap(
    lambda pool: st.lists(st.sampled_from(pool), min_size=1, max_size=8))

SENT = {"would change", "not comparable"}


def plan_then_run(cli: InProcess, tmp_path: Path, fleet_rows: list[dict[str, Any]],
                  rows: list[dict[str, Any]], concurrency: int) -> None:
    """The property for one fleet and one input (see the module docstring)."""
    for old in tmp_path.glob("*.jsonl"):
        old.unlink()
    fleet_file = write_jsonl(tmp_path / "fleet.jsonl", fleet_rows)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    common = ["--rate", "0", "--concurrency", str(concurrency)]

    with simulator_in_thread(fleet=Fleet.from_jsonl(fleet_file)) as sim:
        planned = cli("plan", str(source), "--endpoint", sim.url, "--json", *common, env=TOKEN)
        assert sim.stats.applied == 0
    assert planned.returncode in (0, 1), planned.stderr
    verdicts = {e["line"]: e["verdict"] for e in map(orjson.loads, planned.stdout.splitlines())}
    assert sorted(verdicts) == list(range(1, len(rows) + 1))

    fleet = Fleet.from_jsonl(fleet_file)  # a fresh copy
    with simulator_in_thread(fleet=fleet) as sim:
        ran = cli("run", str(source), "--endpoint", sim.url, "--out", str(out),
                  "--skip-unchanged", "--log-format", "json", *common, env=TOKEN)
        puts = {t: sim.counts(t).received for t in (*TASKS, "unknown")}
        final = {t: fleet.show(t) for t in TASKS}
    if set(verdicts.values()) == {"would fail"} and all(
            not isinstance(item, Planned) for item in checked_lines(str(source), {})):
        # every line invalid: run refuses the file as a whole (exit 2), plan lists each line
        assert ran.returncode == 2, ran.stderr
        assert not out.exists()
        assert puts == dict.fromkeys(puts, 0)
        return
    records = {r["line"]: r for r in read_jsonl(out)}
    assert sorted(records) == list(range(1, len(rows) + 1)), ran.stderr

    context = {"rows": rows, "verdicts": verdicts, "records": records}
    for number, verdict in verdicts.items():
        record = records[number]
        kind = (record["status"], record["error_code"])
        if verdict in SENT:
            assert kind == ("succeeded", None), (number, context)
            # the read, then the PUT
            assert (record["reads"], record["attempts"]) == (1, 1), (number, context)
        elif verdict == "already as wanted":
            assert kind == ("skipped", "unchanged"), (number, context)
            assert (record["reads"], record["attempts"]) == (1, 0), (number, context)
        else:
            assert verdict == "would fail"
            assert record["status"] in ("invalid", "failed"), (number, context)
            assert record["attempts"] == 0, (number, context)  # no PUT
    sent = Counter(rows[n - 1]["task_id"] for n, v in verdicts.items() if v in SENT)
    assert puts == {t: sent[t] for t in puts}, context
    assert ran.returncode == (1 if "would fail" in verdicts.values() else 0), ran.stderr

    # every task ends as plan projected it, field by field, wherever ShowTask can tell
    scratch = Fleet.from_jsonl(fleet_file)
    projected: dict[str, dict[str, Any]] = {}
    for task_id in TASKS:
        view = scratch.show(task_id)
        assert view is not None
        projected[task_id] = view
    for item in checked_lines(str(source), {}):
        if isinstance(item, Planned) and item.task_id in projected:
            projected[item.task_id] = applied(projected[item.task_id], orjson.loads(item.body))
    for task_id, view in projected.items():
        found = final[task_id]
        assert found is not None
        for path, show_path in READABLE.items():
            assert _at(found, show_path) == _at(view, show_path), (task_id, path, context)


def _at(view: dict[str, Any], dotted: str) -> Any:
    value: Any = view
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fleets, inputs, st.integers(1, 4))
def test_plan_says_what_run_skip_unchanged_does(cli: InProcess, tmp_path: Path,
                                                fleet_rows: list[dict[str, Any]],
                                                rows: list[dict[str, Any]],
                                                concurrency: int) -> None:
    plan_then_run(cli, tmp_path, fleet_rows, rows, concurrency)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@settings(max_examples=400, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fleets, inputs, st.integers(1, 4))
def test_plan_says_what_run_skip_unchanged_does_many(cli: InProcess, tmp_path: Path,
                                                     fleet_rows: list[dict[str, Any]],
                                                     rows: list[dict[str, Any]],
                                                     concurrency: int) -> None:
    plan_then_run(cli, tmp_path, fleet_rows, rows, concurrency)


# -- counterexamples the property found, kept as plain tests --------------------------------------

FLEET_T0_AT_0 = [{"id": t, "speed_limit": 0, "name": "web-01", "enterprise_project_id": "0",
                  "migration_ip": "192.168.0.1", "target_server": {"name": "target-a"},
                  "source_server": {"state": "syncing"}, "clone_server": None} for t in TASKS]


def test_two_lines_setting_enterprise_project(cli: InProcess, tmp_path: Path) -> None:
    """Issue 18 item 10 (i), as the property shrank it: plan said the second line would change
    (its projection kept `enterprise_project`, the comparison read `enterprise_project_id`)
    while run skipped it as unchanged after one PUT."""
    line = {"task_id": "t0", "body": {"enterprise_project": PROJECTS[1]}}
    plan_then_run(cli, tmp_path, FLEET_T0_AT_0, [line, line], 1)
