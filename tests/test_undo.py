"""Undo lines from the side log: which entries count, the values chosen, what cannot be restored."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.changes.undo import (
    TaskUndo,
    check_reversible,
    for_journals,
    for_run,
    undoable,
    write_undo,
)
from batchsms.changes.undo_log import is_capture, previous_log_path
from batchsms.cli import build_parser, report_config
from batchsms.commands.report import run_report
from batchsms.errors import UsageError
from batchsms.journal.outcomes import Outcome, Status
from batchsms.lines.schema import validate
from tests.jsonl import read_jsonl, write_jsonl


def record(line: int, task_id: str, status: str = "succeeded", *, run_id: str = "r1",
           previous: Any = None, **extra: Any) -> dict[str, Any]:
    rec = {"run_id": run_id, "line": line, "task_id": task_id, "ref": f"ref-{line}",
           "status": status, "error_code": None, "maybe_applied": False,
           "body_sha256": f"sha-{line}", **extra}
    if previous is not None:
        rec["previous"] = previous
    return rec


def test_outcome_serialises_previous_only_when_set() -> None:
    """`previous` is the last key when captured, absent otherwise."""
    base = Outcome("r", 1, "t", None, Status.SUCCEEDED, finished_at="x")
    assert "previous" not in orjson.loads(base.to_json())
    with_prev = Outcome("r", 1, "t", None, Status.SUCCEEDED, finished_at="x",
                        previous={"speed_limit": 100})
    data = orjson.loads(with_prev.to_json())
    assert list(data)[-1] == "previous"
    assert data["previous"] == {"speed_limit": 100}


def test_which_records_can_be_undone() -> None:
    """Succeeded, verify mismatches and maybe-applied failures; not refusals nor skips."""
    assert undoable(record(1, "a"))
    assert undoable(record(1, "a", "failed", error_code="verify_mismatch"))
    assert undoable(record(1, "a", "failed", maybe_applied=True))
    assert not undoable(record(1, "a", "failed", error_code="SMS.1801"))
    assert not undoable(record(1, "a", "skipped", error_code="unchanged"))
    assert not is_capture(record(1, "a")), "a record without `previous` captured nothing"


def _task(*entries: dict[str, Any]) -> TaskUndo:
    task = TaskUndo(entries[0]["task_id"], entries[0].get("ref"))
    for entry in entries:
        task.add(entry)
    return task


def test_undo_line_drops_fields_that_had_no_value_and_says_so() -> None:
    """Null previous values cannot be restored: left out, and the task named with why; nothing
    left, no line."""
    line, why = _task(record(3, "t", previous={
        "speed_limit": 100, "vm_template_id": None, "clone_server": {"name": None},
        "target_server": {"ip": None, "name": "x"}})).line()
    assert line is not None
    assert orjson.loads(line) == {"task_id": "t", "ref": "ref-3",
                                  "body": {"speed_limit": 100, "target_server": {"name": "x"}}}
    assert why == ("clone_server.name, target_server.ip, vm_template_id had no value before "
                   "(an update cannot unset a field)")
    line, why = _task(record(4, "t", previous={"vm_template_id": None})).line()
    assert line is None
    assert why is not None
    assert "vm_template_id had no value before" in why


def test_one_line_per_task_earliest_value_last_write_expected() -> None:
    """Each field takes the earliest value captured (a later capture re-read a value an earlier
    write had already changed); `expect` is what the last write set, for the undo's fields."""
    task = _task(
        {**_entry("r1", 1, "a", 100), "wrote": {"speed_limit": 200}},
        {**_entry("r2", 1, "a", 200), "wrote": {"speed_limit": 300}},  # re-read after r1's
        {"run_id": "r2", "line": 2, "task_id": "a", "ref": None, "body_sha256": "x",
         "previous": {"speed_limit": 300, "name": "old"},
         "wrote": {"speed_limit": 400, "name": "new"}})
    line, why = task.line()
    assert why is None
    assert line is not None
    assert orjson.loads(line) == {"task_id": "a", "ref": None,
                                  "body": {"name": "old", "speed_limit": 100},
                                  "expect": {"name": "new", "speed_limit": 400}}


def test_undo_line_of_an_ipv6_migration_ip_passes_the_schema() -> None:
    """Issue 18 item 6: an IPv6 address is valid only with `use_ipv6`: the undo line sets it."""
    line, why = _task({**_entry("r1", 1, "a", 1), "previous": {"migration_ip": "2001:db8::5"},
                       "wrote": {"migration_ip": "192.0.2.7"}}).line()
    assert why is None
    assert line is not None
    undo = orjson.loads(line)
    assert undo["body"] == {"migration_ip": "2001:db8::5", "use_ipv6": True}
    assert undo["expect"] == {"migration_ip": "192.0.2.7"}
    assert validate(undo["body"])[1] == []


def test_a_body_the_schema_refuses_is_named_not_written() -> None:
    """A value read back that an update would refuse: no line, the task named with why."""
    line, why = _task({**_entry("r1", 1, "a", 1), "previous": {"speed_limit": -5}}).line()
    assert line is None
    assert why is not None
    assert why.startswith("the schema refuses the undo line: "
                                              "body.speed_limit")


def test_run_scope_begins_at_the_last_run_without_resume(tmp_path: Path) -> None:
    """`run --undo-file` covers its sequence: from the marker of the last run that did not
    resume; the resumed runs after it continue it."""
    out = tmp_path / "o.jsonl"
    _side_log(out, _marker("r1", resume=False), _entry("r1", 1, "a", 1),
              _marker("r2", resume=False), _entry("r2", 1, "b", 2),
              _marker("r3", resume=True), _entry("r3", 2, "c", 3))
    undo = tmp_path / "undo.jsonl"
    assert write_undo([for_run(out)], undo).lines == 2
    assert sorted(r["task_id"] for r in read_jsonl(undo)) == ["b", "c"]
    assert write_undo(for_journals([out]), undo).lines == 3


def _report(*argv: str | Path) -> tuple[int, str]:
    config = report_config(build_parser().parse_args(["report", *map(str, argv)]))
    err = io.StringIO()
    return run_report(config, stdout=io.StringIO(), stderr=err), err.getvalue()


def test_report_undo_to_reads_every_journal_in_order(tmp_path: Path) -> None:
    """Across two journals (a crash, then a resume), one line per task; journals without a side
    log (written before there were any) give their records' `previous`."""
    first = _journal(tmp_path / "a.jsonl", record(1, "a", previous={"speed_limit": 1}))
    with first.open("ab") as f:
        f.write(b'{"run_id": "r1", "line": 2, "cut')  # a SIGKILL mid-record
    second = _journal(tmp_path / "b.jsonl",
                      record(1, "a", "skipped", run_id="r2", error_code="already_succeeded"),
                      record(2, "b", run_id="r2", previous={"name": "old", "vm_template_id": None}),
                      record(3, "a", run_id="r2", previous={"speed_limit": 2}))
    code, err = _report(first, second, "--undo-to", tmp_path / "undo.jsonl")
    assert code == 0
    assert [(r["task_id"], r["body"]) for r in read_jsonl(tmp_path / "undo.jsonl")] == [
        ("b", {"name": "old"}), ("a", {"speed_limit": 1})]
    assert "wrote 2 undo lines" in err
    assert "1 task cannot be restored in full (b: vm_template_id had no value before" in err


def test_report_undo_to_refuses_to_overwrite_an_input(tmp_path: Path) -> None:
    """--undo-to naming an outcomes file it reads is a usage error."""
    journal = _journal(tmp_path / "o.jsonl", record(1, "a", previous={"speed_limit": 1}))
    with pytest.raises(UsageError, match="--undo-to"):
        _report(journal, "--undo-to", journal)
    with pytest.raises(UsageError, match="different files"):
        _report(journal, "--undo-to", tmp_path / "x", "--failed-to", tmp_path / "x")


def test_report_counts_unchanged_lines_as_done(tmp_path: Path) -> None:
    """`skipped`/`unchanged` (--skip-unchanged) is done: exit 0, and nothing to --failed-to."""
    journal = _journal(tmp_path / "o.jsonl", record(1, "a"),
                       record(2, "b", "skipped", error_code="unchanged"))
    code, _ = _report(journal, "--failed-to", tmp_path / "left.jsonl")
    assert code == 0
    assert (tmp_path / "left.jsonl").read_bytes() == b""


def test_undo_refuses_an_input_it_could_not_undo(tmp_path: Path) -> None:
    """Fields that cannot be read back are named with their lines; readable input passes."""
    rows = [{"task_id": "a", "body": {"speed_limit": 1}},
            *({"task_id": f"t{i}", "body": {"use_ipv6": True}} for i in range(5)),
            {"task_id": "b", "body": {"target_server": {"networks": [{"mac": "m"}]}}},
            {"task_id": "c", "body": {"speedlimit": 1}}]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    with pytest.raises(UsageError) as caught:
        check_reversible(str(source), {})
    message = str(caught.value)
    assert "target_server.networks (line 7)" in message
    assert "use_ipv6 (lines 2, 3, 4 and 2 more)" in message
    assert "--allow-irreversible" in message
    source.write_bytes(orjson.dumps(rows[0]) + b"\n" + orjson.dumps(rows[-1]) + b"\n")
    check_reversible(str(source), {})
    with pytest.raises(UsageError, match="exist_server"):
        check_reversible(str(source), {"exist_server": True})
    with pytest.raises(UsageError, match="standard input"):
        check_reversible("-", {})


def _journal(path: Path, *records: dict[str, Any]) -> Path:
    return write_jsonl(path, records)


def _side_log(out: Path, *entries: dict[str, Any]) -> None:
    previous_log_path(out).write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))


def _entry(run_id: str, line: int, task_id: str, speed: int) -> dict[str, Any]:
    return {"run_id": run_id, "line": line, "task_id": task_id, "ref": None,
            "body_sha256": f"sha-{line}", "previous": {"speed_limit": speed}}


def _marker(run_id: str, *, resume: bool) -> dict[str, Any]:
    return {"run_id": run_id, "run": True, "resume": resume}


def test_report_undo_to_counts_the_writes_that_may_have_applied(tmp_path: Path) -> None:
    """An entry counts when its record is succeeded, verify_mismatch or maybe_applied, or it has
    no record (a kill with the write in flight); a refusal drops it. A cut entry is skipped."""
    out = _journal(tmp_path / "o.jsonl",
                   record(1, "a", run_id="r1"),
                   record(2, "b", "failed", run_id="r1", error_code="verify_mismatch"),
                   record(3, "c", "failed", run_id="r1", maybe_applied=True),
                   record(4, "d", "failed", run_id="r1", error_code="SMS.1801"))
    _side_log(out, _marker("r1", resume=False), *(
        _entry("r1", line, task, line) for line, task in enumerate("abcde", 1)))
    with previous_log_path(out).open("ab") as f:
        f.write(b'{"run_id": "r1", "line": 6, "cu')  # cut by the kill
    _, err = _report(out, "--undo-to", tmp_path / "undo.jsonl")
    assert [(r["task_id"], r["body"]) for r in read_jsonl(tmp_path / "undo.jsonl")] == [
        ("a", {"speed_limit": 1}), ("b", {"speed_limit": 2}), ("c", {"speed_limit": 3}),
        ("e", {"speed_limit": 5})]
    assert "wrote 4 undo lines" in err


def test_report_undo_to_does_not_order_runs_by_their_ids(tmp_path: Path) -> None:
    """Issue 18 item 5: two runs in the same second, the later one's id sorting first. The first
    was killed with a's write in flight (no record); the second (--resume) re-read a's changed
    value and changed it again. The undo restores a's value from before the first run."""
    first, second = "20260101T000000Z-ffffffff", "20260101T000000Z-00000000"
    out = _journal(tmp_path / "o.jsonl",
                   record(1, "a", run_id=second, previous={"speed_limit": 200}))
    _side_log(out, _marker(first, resume=False),
              {**_entry(first, 1, "a", 100), "wrote": {"speed_limit": 200}},
              _marker(second, resume=True),
              {**_entry(second, 1, "a", 200), "wrote": {"speed_limit": 300}})
    _report(out, "--undo-to", tmp_path / "undo.jsonl")
    assert read_jsonl(tmp_path / "undo.jsonl") == [
        {"task_id": "a", "ref": None, "body": {"speed_limit": 100},
         "expect": {"speed_limit": 300}}]


def test_report_undo_to_names_the_tasks_it_cannot_restore(tmp_path: Path) -> None:
    """(b) of the invariant: a field with no value before cannot be unset: the summary names the
    task and why (a count and the first few), the rest of its line is still written."""
    out = _journal(tmp_path / "o.jsonl", *(record(i, f"t{i}", run_id="r1") for i in range(1, 8)))
    _side_log(out, _marker("r1", resume=False), *(
        {**_entry("r1", i, f"t{i}", i), "previous": {"speed_limit": i, "vm_template_id": None},
         "wrote": {"speed_limit": 9, "vm_template_id": "tpl"}} for i in range(1, 8)))
    _, err = _report(out, "--undo-to", tmp_path / "undo.jsonl")
    assert len(read_jsonl(tmp_path / "undo.jsonl")) == 7
    assert "7 tasks cannot be restored in full (t1: vm_template_id had no value before " \
           "(an update cannot unset a field); t2: " in err
    assert "t5: vm_template_id had no value before (an update cannot unset a field); " \
           "and 2 more)" in err


def test_report_undo_to_restores_a_write_the_kill_left_without_record(tmp_path: Path) -> None:
    """A run killed after sending line 2's write: its captured value is in the undo file."""
    out = _journal(tmp_path / "o.jsonl", record(1, "a", run_id="r1", previous={"speed_limit": 1}))
    _side_log(out, _entry("r1", 1, "a", 1), _entry("r1", 2, "b", 2))
    _, err = _report(out, "--undo-to", tmp_path / "undo.jsonl")
    assert sorted((r["task_id"], r["body"]) for r in read_jsonl(tmp_path / "undo.jsonl")) == [
        ("a", {"speed_limit": 1}), ("b", {"speed_limit": 2})]
    assert "wrote 2 undo lines" in err
