"""`op` on input lines (docs/reference.md §1, §11) as far as reading and checking go: `update`
plans exactly as a line without `op`; other values are refused at path `op`; a speed-limit line
gets every problem of its body and expect, and is planned with its op when it has none."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

import batchsms
from batchsms.lines.bodies import Planned, Planner, check_speed_limit, checked_lines
from batchsms.lines.reader import InvalidLine, Line, parse_line
from batchsms.lines.speed_rules import rules_option, validate_speed_limit
from tests.jsonl import read_jsonl
from tests.processes import Here

TID = "ef3b9722-07a0-40ae-89b0-889ee96d0001"
RULES = rules_option("00:00-07:59=1000,08:00-19:59=100@50,20:00-23:59=1000")
SAMPLE = Path(__file__).resolve().parent.parent / "inputs" / "night_full_speed.jsonl"


def planned(**fields: Any) -> Planned | InvalidLine:
    line = parse_line(1, orjson.dumps({"task_id": TID, **fields}))
    assert line is not None
    return line if isinstance(line, InvalidLine) else Planner().plan(line)


def errors(item: Planned | InvalidLine) -> list[tuple[str, str]]:
    assert isinstance(item, InvalidLine), item
    return [(p.path, p.message) for p in item.errors]


@pytest.mark.parametrize("op", ["update", None])
def test_op_update_plans_as_a_line_without_op(op: str | None) -> None:
    """`"op": "update"` (or null) gives the very Planned value a line without op gives."""
    body = {"speed_limit": 200, "name": "web-01"}
    assert planned(op=op, body=body, ref="r") == planned(body=body, ref="r")
    item = planned(op=op, body=body, expect={"speed_limit": 100})
    assert item == planned(body=body, expect={"speed_limit": 100})
    assert isinstance(item, Planned)


def test_the_reader_keeps_the_op() -> None:
    """Line.op: the op named, or None when the line names none (the run's default decides)."""
    assert parse_line(1, orjson.dumps({"task_id": TID, "body": {}})) == Line(1, TID, None, {})
    line = parse_line(1, orjson.dumps({"task_id": TID, "op": "speed-limit"}))
    assert line == Line(1, TID, None, None, None, "speed-limit")


OP_MUST = "must be 'update' (UpdateTask) or 'speed-limit' (UpdateSpeed), got "


@pytest.mark.parametrize(("op", "shown"), [
    ("Update", "'Update'"), ("speed_limit", "'speed_limit'"), ("", "''"), (1, "an integer"),
    (["update"], "an array"), (True, "a boolean")])
def test_any_other_op_is_refused_at_path_op(op: object, shown: str) -> None:
    """An op that is neither value: one problem, path `op`, with every other envelope problem."""
    assert errors(planned(op=op, body={"speed_limit": 1})) == [("op", OP_MUST + shown)]
    assert errors(planned(op=op, ref=5)) == [("ref", "must be a string, got an integer"),
                                             ("op", OP_MUST + shown)]


def test_a_valid_speed_limit_line_is_planned_with_its_op() -> None:
    """Every check passes: Planned with op speed-limit, the canonical rules as its body (the
    empty list too: it clears the rules)."""
    item = planned(op="speed-limit", body=RULES)
    assert isinstance(item, Planned)
    assert item.op == "speed-limit"
    assert item.body == orjson.dumps(RULES, option=orjson.OPT_SORT_KEYS)
    assert item.sha256 == hashlib.sha256(item.body).hexdigest()
    empty = planned(op="speed-limit", body={"speed_limit": []}, expect={"speed_limit": []})
    assert isinstance(empty, Planned)
    assert (empty.body, empty.expect, empty.op) == (
        b'{"speed_limit":[]}', b'{"speed_limit":[]}', "speed-limit")
    update = planned(body={"speed_limit": 5})
    assert isinstance(update, Planned)
    assert update.op == "update"


def test_the_run_default_op_and_rules() -> None:
    """A line without op takes the planner's default op; a speed-limit line without a body
    takes `--rules`; a line naming op update stays an update."""
    planner = Planner({"speed_limit": 100}, default_op="speed-limit", rules=RULES)
    bare = parse_line(1, orjson.dumps({"task_id": TID}))
    assert isinstance(bare, Line)
    item = planner.plan(bare)
    assert isinstance(item, Planned)
    assert (item.op, orjson.loads(item.body)) == ("speed-limit", RULES)
    own = parse_line(2, orjson.dumps({"task_id": TID, "body": {"speed_limit": []}}))
    assert isinstance(own, Line)
    assert orjson.loads(planner.plan(own).body) == {"speed_limit": []}  # type: ignore[union-attr]
    upd = parse_line(3, orjson.dumps({"task_id": TID, "op": "update"}))
    assert isinstance(upd, Line)
    item = planner.plan(upd)
    assert isinstance(item, Planned)
    assert (item.op, item.body) == ("update", b'{"speed_limit":100}')


def test_a_speed_limit_line_gets_every_problem_of_body_and_expect() -> None:
    """Body and expect are checked by the §11 rules, every problem with its path; the line's
    body is not a PutTaskReq (a flat speed_limit is refused)."""
    item = planned(op="speed-limit",
                   body={"speed_limit": [{"start": "22:00", "end": "06:00", "speed": 5}],
                         "name": "x"},
                   expect={"speed_limit": 200})
    assert errors(item) == [
        ("body.name", "unknown field 'name' (not in SpeedLimit)"),
        ("body.speed_limit[0].end", "is before start (22:00): a window across midnight must be "
         "split into two rules, 22:00-23:59 and 00:00-06:00"),
        ("expect.speed_limit", "must be an array of SpeedLimitlJson objects, got an integer")]


def test_a_speed_limit_line_needs_its_own_body() -> None:
    """--set/--patch are PutTaskReq layers: they do not give a speed-limit line a body."""
    line = parse_line(1, orjson.dumps({"task_id": TID, "op": "speed-limit"}))
    assert isinstance(line, Line)
    assert errors(Planner({"speed_limit": 100}).plan(line)) == [
        ("body", 'required: a speed-limit line carries its body, {"speed_limit": [...]}')]


def test_a_speed_limit_body_that_is_not_an_object() -> None:
    """The envelope names the model of the line's op."""
    assert errors(planned(op="speed-limit", body=[])) == [
        ("body", "must be an object (SpeedLimit), got an array")]


def test_check_speed_limit_gives_the_bytes_to_send() -> None:
    """What the wiring will send: canonical bytes (nulls dropped), their hash, the expect."""
    body = {"speed_limit": [{**RULES["speed_limit"][0], "over_speed_threshold": None}]}
    line = Line(1, TID, None, body, {"speed_limit": []}, "speed-limit")
    data, sha, expect, problems = check_speed_limit(line)
    assert problems == ()
    assert data == b'{"speed_limit":[{"end":"07:59","speed":1000,"start":"00:00"}]}'
    assert sha == hashlib.sha256(data).hexdigest()
    assert expect == b'{"speed_limit":[]}'


def test_the_api_validate_names_op_problems() -> None:
    """batchsms.validate, the library's check of one update, reads op as the CLI does."""
    assert batchsms.validate({"task_id": TID, "op": "update", "body": {"speed_limit": 5}}) == []
    assert [p.path for p in batchsms.validate({"task_id": TID, "op": "x", "body": {}})] == ["op"]


def test_the_sample_file_is_a_fleet_wide_rules_change() -> None:
    """inputs/night_full_speed.jsonl: every line a valid speed-limit line, each body the
    --rules example."""
    items = list(checked_lines(str(SAMPLE), {}))
    assert len(items) == 6
    for item in items:
        assert isinstance(item, Planned)
        assert item.op == "speed-limit"
    for raw in SAMPLE.read_bytes().splitlines():
        line = orjson.loads(raw)
        assert line["op"] == "speed-limit"
        assert validate_speed_limit(line["body"]) == (RULES, [])


def test_run_sends_the_sample(tmp_path: Path, here: Here) -> None:
    """`run --simulate` on the sample: every speed-limit line is sent (one attempt each, `op`
    in its record), and an `op: update` line beside them as usual."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(SAMPLE.read_bytes() + orjson.dumps(
        {"task_id": TID, "op": "update", "body": {"speed_limit": 7}}) + b"\n")
    out = tmp_path / "out.jsonl"
    result = here("run", str(source), "--simulate", "--out", str(out), "--rate", "0")
    assert result.returncode == 0, result.stderr
    records = sorted(read_jsonl(out), key=lambda r: r["line"])
    assert [(r["status"], r["attempts"], r["op"]) for r in records] == [
        ("succeeded", 1, "speed-limit")] * 6 + [("succeeded", 1, "update")]


def test_an_invalid_line_keeps_its_op_for_its_outcome() -> None:
    """The outcome's `op` (§3) of an invalid line: the op it names, the planner's for a body
    that fails, None only when the envelope is refused and names no valid op."""
    refused = parse_line(1, orjson.dumps({"task_id": 12, "op": "speed-limit"}))
    assert isinstance(refused, InvalidLine)
    assert refused.op == "speed-limit"
    bad = parse_line(1, orjson.dumps({"task_id": 12, "op": "nope"}))
    assert isinstance(bad, InvalidLine)
    assert bad.op is None
    body = planned(op="speed-limit", body={"speed_limit": 5})
    assert isinstance(body, InvalidLine)
    assert body.op == "speed-limit"
    update = planned(body={"speed_limit": 5000})
    assert isinstance(update, InvalidLine)
    assert update.op == "update"
