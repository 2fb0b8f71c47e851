"""Undo lines from journal records: which records, in which order, what cannot be restored."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.cli import build_parser, report_config
from batchsms.commands.report import run_report
from batchsms.errors import UsageError
from batchsms.outcomes import Outcome, Status, resume_key
from batchsms.previous_log import orphans, previous_log_path, with_orphans
from batchsms.undo import check_reversible, for_run, undo_line, undoable, write_undo
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
    prev = {"speed_limit": 1}
    assert undoable(record(1, "a", previous=prev))
    assert undoable(record(1, "a", "failed", previous=prev, error_code="verify_mismatch"))
    assert undoable(record(1, "a", "failed", previous=prev, maybe_applied=True))
    assert not undoable(record(1, "a", "failed", previous=prev, error_code="SMS.1801"))
    assert not undoable(record(1, "a", "skipped", previous=prev, error_code="unchanged"))
    assert not undoable(record(1, "a"))


def test_undo_line_drops_fields_that_had_no_value() -> None:
    """Null previous values cannot be restored: left out and counted; nothing left, no line."""
    line, lost = undo_line(record(3, "t", previous={
        "speed_limit": 100, "vm_template_id": None, "clone_server": {"name": None},
        "target_server": {"ip": None, "name": "x"}}))
    assert line is not None
    assert orjson.loads(line) == {"task_id": "t", "ref": "ref-3",
                                  "body": {"speed_limit": 100, "target_server": {"name": "x"}}}
    assert lost == 3
    assert undo_line(record(4, "t", previous={"vm_template_id": None})) == (None, 1)


def test_undo_file_is_in_reverse_order_of_application(tmp_path: Path) -> None:
    """Two changes of one task: the later one is undone first, so the first value wins."""
    records = [record(1, "a", previous={"speed_limit": 100}),
               record(2, "b", previous={"speed_limit": 50}),
               record(3, "a", previous={"speed_limit": 200}),
               record(4, "c", "failed", previous={"speed_limit": 7}, error_code="SMS.0205")]
    summary = write_undo(records, tmp_path / "undo.jsonl")
    assert (summary.lines, summary.lost, summary.empty) == (3, 0, 0)
    assert [(r["task_id"], r["body"]["speed_limit"]) for r in
            read_jsonl(tmp_path / "undo.jsonl")] == [("a", 200), ("b", 50), ("a", 100)]


def test_for_run_takes_this_run_and_the_lines_it_resumed() -> None:
    """A --resume run's undo covers the earlier records of the lines it skipped as done."""
    earlier = record(1, "a", run_id="r0", previous={"speed_limit": 1})
    unrelated = record(2, "b", run_id="r0", previous={"speed_limit": 2})
    mine = record(3, "c", run_id="r1", previous={"speed_limit": 3})
    resumed = {resume_key("a", "sha-1")}
    assert list(for_run([earlier, unrelated, mine], "r1", resumed)) == [earlier, mine]
    assert list(for_run([earlier, unrelated, mine], "r1", set())) == [mine]


def _report(*argv: str | Path) -> tuple[int, str]:
    config = report_config(build_parser().parse_args(["report", *map(str, argv)]))
    err = io.StringIO()
    return run_report(config, stdout=io.StringIO(), stderr=err), err.getvalue()


def test_report_undo_to_reads_every_journal_in_order(tmp_path: Path) -> None:
    """Across two journals (a crash, then a resume), the later file's lines come first."""
    first = _journal(tmp_path / "a.jsonl", record(1, "a", previous={"speed_limit": 1}))
    with first.open("ab") as f:
        f.write(b'{"run_id": "r1", "line": 2, "cut')  # a SIGKILL mid-record
    second = _journal(tmp_path / "b.jsonl",
                      record(1, "a", "skipped", run_id="r2", error_code="already_succeeded"),
                      record(2, "b", run_id="r2", previous={"name": "old", "ip": None}))
    code, err = _report(first, second, "--undo-to", tmp_path / "undo.jsonl")
    assert code == 0
    assert [r["task_id"] for r in read_jsonl(tmp_path / "undo.jsonl")] == ["b", "a"]
    assert "wrote 2 undo lines" in err
    assert "1 fields had no value" in err


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


def test_orphans_are_captures_whose_line_got_no_record(tmp_path: Path) -> None:
    """A capture whose run wrote a record for its line is not an orphan; the others are."""
    out = _journal(tmp_path / "o.jsonl", record(1, "a", run_id="r1", previous={"speed_limit": 1}))
    _side_log(out, _entry("r1", 1, "a", 1), _entry("r1", 2, "b", 2), _entry("r0", 1, "c", 3))
    with previous_log_path(out).open("ab") as f:
        f.write(b'{"run_id": "r1", "line": 3, "cu')  # cut by the kill
    found = orphans(out)
    assert [(o["run_id"], o["line"]) for o in found] == [("r1", 2), ("r0", 1)]
    assert all(undoable(o) for o in found)
    assert orphans(tmp_path / "none.jsonl") == []


def test_orphans_are_placed_in_order_of_application() -> None:
    """After their run's last record; a run without records before any later run."""
    records = [record(1, "a", run_id="r1"), record(2, "b", run_id="r1"),
               record(1, "a", run_id="r3")]
    found = [{**_entry("r1", 3, "c", 0), "status": "failed"},
             {**_entry("r2", 1, "d", 0), "status": "failed"},
             {**_entry("r0", 1, "e", 0), "status": "failed"},
             {**_entry("r9", 1, "f", 0), "status": "failed"}]
    order = [(r["run_id"], r["task_id"]) for r in with_orphans(records, found)]
    assert order == [("r0", "e"), ("r1", "a"), ("r1", "b"), ("r1", "c"), ("r2", "d"),
                     ("r3", "a"), ("r9", "f")]


def test_report_undo_to_restores_a_write_the_kill_left_without_record(tmp_path: Path) -> None:
    """A run killed after sending line 2's write: its captured value is in the undo file."""
    out = _journal(tmp_path / "o.jsonl", record(1, "a", run_id="r1", previous={"speed_limit": 1}))
    _side_log(out, _entry("r1", 1, "a", 1), _entry("r1", 2, "b", 2))
    _, err = _report(out, "--undo-to", tmp_path / "undo.jsonl")
    assert [(r["task_id"], r["body"]) for r in read_jsonl(tmp_path / "undo.jsonl")] == [
        ("b", {"speed_limit": 2}), ("a", {"speed_limit": 1})]
    assert "wrote 2 undo lines" in err
