"""`batchsms report`: latest record per line across runs, figures, --json, --failed-to, exits."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.cli import build_parser, report_config
from batchsms.commands import report as report_mod
from batchsms.commands.report import ReportConfig, run_report
from batchsms.commands.report.figures import percentile, summarize
from batchsms.errors import UsageError
from tests.jsonl import write_jsonl
from tests.processes import InProcess

# The input of both runs: line 7 is blank (no outcome), odd spacing proves verbatim copies.
INPUT_LINES = [
    b'{"task_id": "t1", "body": {"speed_limit": 100}}',
    b'{"body":{"speed_limit": 200},  "task_id":"t2", "ref": "web-02"}',
    b'{"task_id": "t3", "body": {"speed_limit": "fast"}}',
    b'{"task_id": "t4", "body": {"speed_limit": 400}}',
    b'{"task_id": "t5", "body": {"speed_limit": 500}}',
    b'{"task_id": "t6", "body": {"speed_limit": 600}}',
    b"",
    b'{"task_id": "t8", "body": {"name": "\xe8\xbf\x81\xe7\xa7\xbb"}, "ref": "db-8"}',
]


def body_sha(line: int, task_id: str) -> str:
    """The body hash run writes: of INPUT_LINES' body for their lines, else one per task."""
    if line <= len(INPUT_LINES) and INPUT_LINES[line - 1]:
        body = orjson.loads(INPUT_LINES[line - 1])["body"]
    else:
        body = {"name": task_id}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def rec(run: str, line: int, status: str, *, attempts: int = 0, elapsed: int | None = None,
        code: str | None = None, msg: str | None = None, task_id: str | None = None,
        http: int | None = None, sha: str | None = None) -> bytes:
    refs = {2: "web-02", 8: "db-8"}
    task_id = task_id or f"t{line}"
    return orjson.dumps({
        "run_id": run, "line": line, "task_id": task_id, "ref": refs.get(line),
        "status": status, "http_status": http, "attempts": attempts, "error_code": code,
        "error_msg": msg, "errors": [], "request_id": None,
        "body_sha256": None if status == "invalid" else sha or body_sha(line, task_id),
        "elapsed_ms": elapsed, "finished_at": "2024-05-01T12:00:00.000Z",
    }) + b"\n"


RUN_A = [
    rec("A", 1, "succeeded", attempts=1, elapsed=100, http=200),
    rec("A", 2, "failed", attempts=1, elapsed=50, code="SMS.6003", msg="Task not found",
        http=404),
    rec("A", 3, "invalid", code="validation", msg="body.speed_limit: must be an integer"),
    rec("A", 4, "failed", attempts=5, elapsed=9000, code="timeout", msg="no answer in 30s"),
    rec("A", 5, "skipped", code="aborted", msg="not sent: authentication rejected"),
    rec("A", 6, "succeeded", attempts=2, elapsed=300, http=200),
]
RUN_B = [  # a --resume run, in completion order
    rec("B", 2, "failed", attempts=1, elapsed=60, code="SMS.6003", msg="Task not found",
        http=404),
    rec("B", 1, "skipped", code="already_succeeded", msg="already succeeded"),
    rec("B", 3, "invalid", code="validation", msg="body.speed_limit: must be an integer"),
    rec("B", 4, "succeeded", attempts=3, elapsed=2000, http=200),
    rec("B", 6, "skipped", code="already_succeeded", msg="already succeeded"),
    rec("B", 8, "failed", attempts=5, elapsed=4000, code="http_500", msg="HTTP 500", http=500),
    rec("B", 5, "skipped", code="deadline", msg="not sent: the --deadline passed"),
]
CUT = b'{"run_id": "B", "line": 9, "task_id": "t9", "sta'  # a crash cut this record


@pytest.fixture
def outcomes(tmp_path: Path) -> Path:
    path = tmp_path / "outcomes.jsonl"
    # Run A, a record cut by a crash (the next run starts on a fresh line), run B, a cut end.
    path.write_bytes(b"".join(RUN_A) + CUT + b"\n" + b"".join(RUN_B) + CUT)
    return path


@pytest.fixture
def original(tmp_path: Path) -> Path:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"\n".join(INPUT_LINES) + b"\n")
    return path


def parse(*argv: str | Path) -> ReportConfig:
    return report_config(build_parser().parse_args(["report", *map(str, argv)]))


def report(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_report(parse(*argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def as_json(*argv: str | Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = report(*argv, "--json")
    return code, orjson.loads(out)


def test_figures_of_a_known_file(outcomes: Path) -> None:
    """Exact counts, percentiles, histogram, slowest and failures from the latest records."""
    code, data = as_json(outcomes, "--top", "2")
    assert code == 1
    assert data["records"] == 13
    assert data["cut_lines"] == 2
    assert data["runs"] == 2
    assert data["lines"] == 7
    assert data["no_record"] == 0
    assert (data["done"], data["not_done"]) == (3, 4)
    assert data["by_status"] == {"succeeded": 3, "failed": 2, "invalid": 1, "skipped": 1}
    assert data["by_error_code"] == {"SMS.6003": 1, "deadline": 1, "http_500": 1,
                                     "validation": 1}
    # Sent lines: 1 (100, run A: the resume skip keeps it), 2 (60), 4 (2000), 6 (300), 8 (4000).
    assert data["latency_ms"] == {"lines": 5, "p50": 300, "p90": 4000, "p99": 4000, "max": 4000}
    assert data["attempts"] == {"0": 2, "1": 2, "2": 1, "3": 1, "5": 1}
    assert [(s["line"], s["elapsed_ms"], s["status"]) for s in data["slowest"]] == \
        [(8, 4000, "failed"), (4, 2000, "succeeded")]
    assert data["slowest"][0] == {"line": 8, "task_id": "t8", "ref": "db-8", "status": "failed",
                                  "attempts": 5, "elapsed_ms": 4000}
    assert data["top_failures"] == [
        {"error_code": "SMS.6003", "error_msg": "Task not found", "count": 1, "example_line": 2},
        {"error_code": "validation", "error_msg": "body.speed_limit: must be an integer",
         "count": 1, "example_line": 3},
    ]
    assert data["failed_to"] is None


def test_json_keys_are_the_documented_ones(outcomes: Path) -> None:
    """--json prints one object with exactly the keys the module docstring lists."""
    _, data = as_json(outcomes)
    assert list(data) == ["files", "records", "cut_lines", "runs", "lines", "no_record",
                          "done", "not_done", "by_status", "by_error_code", "latency_ms",
                          "attempts", "slowest", "top_failures", "failed_to"]
    for key in data:
        assert f"`{key}`" in (report_mod.__doc__ or "")


def test_text_report_of_one_record_says_it_in_the_singular(tmp_path: Path) -> None:
    """One record of one run: "1 record, 1 run", not "1 records, 1 runs"."""
    path = tmp_path / "one.jsonl"
    path.write_bytes(rec("r1", 1, "succeeded", attempts=1, elapsed=5, http=200))
    code, out, _ = report(path)
    assert code == 0
    assert f"{path}: 1 record, 1 run, 0 cut lines skipped" in out


def test_text_report(outcomes: Path) -> None:
    """The text report says what --json says, for people."""
    code, out, err = report(outcomes)
    assert code == 1
    assert err == ""
    assert "13 records, 2 runs, 2 cut lines skipped" in out
    assert "7 lines (latest record each): 3 succeeded, 2 failed, 1 invalid, 1 skipped" in out
    assert "p50 300, p90 4000, p99 4000, max 4000" in out
    assert "attempts (attempts: lines): 0: 2, 1: 2, 2: 1, 3: 1, 5: 1" in out
    assert "line 8  t8  4000 ms  (failed, 5 attempts)" in out
    assert "SMS.6003  e.g. line 2: Task not found" in out


def test_latest_record_wins_across_files(outcomes: Path, tmp_path: Path) -> None:
    """A later file (a later run) supersedes earlier records of the same lines."""
    later = tmp_path / "later.jsonl"
    later.write_bytes(b"".join(rec("C", n, "succeeded", attempts=1, elapsed=10)
                               for n in (2, 3, 5, 8)))
    code, data = as_json(outcomes, later)
    assert code == 0
    assert data["runs"] == 3
    assert data["by_status"] == {"succeeded": 7, "failed": 0, "invalid": 0, "skipped": 0}
    assert data["top_failures"] == []
    code, data = as_json(later, outcomes)  # the order given is the order of the runs
    assert code == 1
    assert data["not_done"] == 4  # run A and B records of 2, 3, 5, 8 come last


def test_exit_0_when_every_line_is_done(tmp_path: Path) -> None:
    """Succeeded, or skipped as already_succeeded by --resume, is done."""
    path = tmp_path / "o.jsonl"
    path.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=5)
                     + rec("B", 2, "skipped", code="already_succeeded", msg="done before"))
    code, data = as_json(path)
    assert code == 0
    assert (data["done"], data["not_done"]) == (2, 0)
    assert data["latency_ms"] == {"lines": 1, "p50": 5, "p90": 5, "p99": 5, "max": 5}


def test_empty_outcomes_file(tmp_path: Path) -> None:
    """An empty journal has nothing not done: exit 0, null percentiles."""
    path = tmp_path / "o.jsonl"
    path.write_bytes(b"")
    code, data = as_json(path)
    assert code == 0
    assert data["lines"] == 0
    assert data["latency_ms"] == {"lines": 0, "p50": None, "p90": None, "p99": None,
                                  "max": None}


def test_failed_to_copies_original_lines_verbatim(outcomes: Path, original: Path,
                                                  tmp_path: Path) -> None:
    """Failed, invalid and never-sent lines are copied byte for byte, in input order."""
    target = tmp_path / "redo.jsonl"
    code, _, err = report(outcomes, "--failed-to", target, "--input", original)
    assert code == 1
    assert target.read_bytes() == b"".join(INPUT_LINES[n - 1] + b"\n" for n in (2, 3, 5, 8))
    assert "wrote 4 original lines" in err
    assert sorted(os.listdir(tmp_path)) == ["input.jsonl", "outcomes.jsonl", "redo.jsonl"]


def test_failed_to_reads_a_gzip_input(outcomes: Path, tmp_path: Path) -> None:
    """The original input may be gzip; the copy is plain."""
    packed = tmp_path / "input.jsonl.gz"
    packed.write_bytes(gzip.compress(b"\n".join(INPUT_LINES) + b"\n"))
    target = tmp_path / "redo.jsonl"
    code, data = as_json(outcomes, "--failed-to", target, "--input", packed)
    assert code == 1
    assert data["failed_to"] == {"path": str(target), "source": "input", "lines": 4,
                                 "missing": 0}
    assert target.read_bytes() == b"".join(INPUT_LINES[n - 1] + b"\n" for n in (2, 3, 5, 8))


def test_failed_to_without_input_writes_envelopes(outcomes: Path, tmp_path: Path) -> None:
    """Without --input: {task_id, ref} envelopes, and a note on stderr."""
    target = tmp_path / "redo.jsonl"
    code, out, err = report(outcomes, "--failed-to", target)
    assert code == 1
    assert "wrote 4 envelopes without body" in err
    assert "--set/--patch" in err
    assert [orjson.loads(x) for x in target.read_bytes().splitlines()] == [
        {"task_id": "t2", "ref": "web-02"}, {"task_id": "t3", "ref": None},
        {"task_id": "t8", "ref": "db-8"}, {"task_id": "t5", "ref": None}]
    assert out  # the report itself still goes to stdout


def test_failed_to_when_all_done_writes_an_empty_file(tmp_path: Path) -> None:
    """Nothing to re-run is an empty file, not a missing one."""
    path = tmp_path / "o.jsonl"
    path.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=5))
    target = tmp_path / "redo.jsonl"
    code, _, _ = report(path, "--failed-to", target)
    assert code == 0
    assert target.read_bytes() == b""


def test_failed_to_refuses_another_input(outcomes: Path, tmp_path: Path) -> None:
    """An --input none of whose lines has a record is refused, and nothing is written."""
    other = tmp_path / "other.jsonl"
    other.write_bytes(b"".join(orjson.dumps({"task_id": f"x{n}", "body": {"speed_limit": 1}})
                               + b"\n" for n in range(9)))
    target = tmp_path / "redo.jsonl"
    with pytest.raises(UsageError, match="is it the input of these runs"):
        report(outcomes, "--failed-to", target, "--input", other)
    assert sorted(os.listdir(tmp_path)) == ["other.jsonl", "outcomes.jsonl"]


def test_records_without_a_line_number_count_as_garbled(tmp_path: Path) -> None:
    """A record with no usable `line` is counted with the cut lines, never used."""
    path = tmp_path / "o.jsonl"
    path.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=1)
                     + b'{"status": "failed", "line": "two"}\n[1, 2]\n')
    _, data = as_json(path)
    assert data["cut_lines"] == 2
    assert data["lines"] == 1


def test_unreadable_or_wrong_files_are_usage_errors(tmp_path: Path, original: Path) -> None:
    """Missing files, non-outcomes files and unsafe options raise UsageError (exit 2)."""
    with pytest.raises(UsageError, match="cannot read outcomes"):
        report(tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="cannot read outcomes"):
        report(tmp_path)
    with pytest.raises(UsageError, match="is it an outcomes file"):
        report(original)
    good = tmp_path / "o.jsonl"
    good.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=1))
    with pytest.raises(UsageError, match="same file as an outcomes file"):
        report(good, "--failed-to", good)
    with pytest.raises(UsageError, match="same file as --input"):
        report(good, "--failed-to", original, "--input", original)
    with pytest.raises(UsageError, match="--top"):
        report(good, "--top", "-1")
    with pytest.raises(UsageError, match="cannot read input"):
        report(good, "--failed-to", tmp_path / "r.jsonl", "--input", tmp_path / "nope.jsonl")
    assert not (tmp_path / "r.jsonl").exists()


def test_percentile_is_nearest_rank() -> None:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    from collections import Counter

    values = Counter(range(1, 101))
    assert [percentile(values, p) for p in (50, 90, 99, 100)] == [50, 90, 99, 100]
    assert percentile(Counter({7: 1}), 99) == 7
    assert percentile(Counter(), 50) is None
    assert percentile(Counter({1: 9, 1000: 1}), 90) == 1
    assert percentile(Counter({1: 9, 1000: 1}), 91) == 1000


def test_memory_is_per_line_not_per_record(tmp_path: Path) -> None:
    """10 000 lines over two runs peak under 3 MB: 13 bytes a line, not a record kept each."""
    path = tmp_path / "o.jsonl"
    with path.open("wb") as f:
        for run in ("A", "B"):
            f.writelines(rec(run, n, "succeeded", attempts=1, elapsed=n % 977)
                         for n in range(1, 10_001))
    tracemalloc.start()
    try:
        data = summarize([path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data["lines"] == 10_000
    assert data["records"] == 20_000
    assert peak < 3 * 1024 * 1024


def test_input_line_without_a_record_is_not_done(tmp_path: Path) -> None:
    """After a crash (SIGKILL, disk full) lines of --input with no record are not done and go
    to --failed-to; the report never gives the all-clear for lines it has not seen."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(INPUT_LINES[:2] + INPUT_LINES[3:6]) + b"\n")
    journal = tmp_path / "o.jsonl"  # the run was killed after lines 1 and 2
    journal.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=5)
                        + rec("A", 2, "succeeded", attempts=1, elapsed=5))
    target = tmp_path / "redo.jsonl"
    code, out, err = report(journal, "--failed-to", target, "--input", source)
    assert code == 1
    assert "done: 2, not done: 3" in out
    assert "3 with no record" in out
    assert target.read_bytes() == b"".join(line + b"\n" for line in INPUT_LINES[3:6])
    assert "wrote 3 original lines" in err


def test_report_keys_lines_by_task_and_body(tmp_path: Path) -> None:
    """A nightly input that changes (a line added on top, the rest moved down) is judged by
    task and body (a retry file's records count for the lines they retried): the moved lines
    are done, the new one is not."""
    journal = tmp_path / "o.jsonl"
    journal.write_bytes(b"".join(rec("A", n, "succeeded", attempts=1, elapsed=5)
                                 for n in (1, 2, 4)))
    tonight = tmp_path / "in.jsonl"
    new_line = b'{"task_id": "t9", "body": {"speed_limit": 900}}'
    tonight.write_bytes(b"\n".join([new_line, INPUT_LINES[0], INPUT_LINES[1], INPUT_LINES[3]])
                        + b"\n")
    target = tmp_path / "redo.jsonl"
    code, data = as_json(journal, "--failed-to", target, "--input", tonight)
    assert code == 1
    assert (data["lines"], data["done"], data["not_done"], data["no_record"]) == (4, 3, 1, 1)
    assert target.read_bytes() == new_line + b"\n"
    # the retry file's records, appended to the same journal, complete the night
    with journal.open("ab") as f:
        f.write(rec("B", 1, "succeeded", attempts=1, elapsed=5, task_id="t9",
                    sha=hashlib.sha256(b'{"speed_limit":900}').hexdigest()))
    code, data = as_json(journal, "--input", tonight)
    assert (code, data["not_done"]) == (0, 0)


def test_a_task_is_not_done_from_its_first_line_not_done(tmp_path: Path) -> None:
    """Lines 300, 400, 300 for one task, the second failed: the third shares the first's
    (task, body), but the task is at 400 -- so it is not done, and `--failed-to` copies the
    second and the third (re-running only the second would end the task at 400), as --resume
    would send them. Another task's lines are judged on their own."""
    bodies = [b'{"task_id": "t1", "body": {"speed_limit": 300}}',
              b'{"task_id": "t1", "body": {"speed_limit": 400}}',
              b'{"task_id": "t1", "body": {"speed_limit": 300}}',
              b'{"task_id": "t2", "body": {"speed_limit": 300}}']
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(bodies) + b"\n")
    sha = {v: hashlib.sha256(b'{"speed_limit":%d}' % v).hexdigest() for v in (300, 400)}
    journal = tmp_path / "o.jsonl"
    journal.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=5, sha=sha[300])
                        + rec("A", 2, "failed", attempts=1, elapsed=5, task_id="t1",
                              code="SMS.9999", sha=sha[400])
                        + rec("A", 4, "succeeded", attempts=1, elapsed=5, task_id="t2",
                              sha=sha[300]))
    target = tmp_path / "redo.jsonl"
    code, data = as_json(journal, "--failed-to", target, "--input", source)
    assert code == 1
    assert (data["lines"], data["done"], data["not_done"]) == (4, 2, 2)
    assert target.read_bytes() == bodies[1] + b"\n" + bodies[2] + b"\n"


def test_input_lines_are_planned_with_the_runs_set(tmp_path: Path) -> None:
    """Bodiless --input lines are planned with the --set the runs used; without it the input
    matches nothing, which is refused rather than reported as all not done."""
    from batchsms.cli import main

    fleet = tmp_path / "fleet.jsonl"
    fleet.write_bytes(b'{"task_id": "t1"}\n{"task_id": "t2"}\n')
    journal = tmp_path / "o.jsonl"
    sha = hashlib.sha256(b'{"speed_limit":200}').hexdigest()
    journal.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=5, sha=sha)
                        + rec("A", 2, "succeeded", attempts=1, elapsed=5, task_id="t2",
                              sha=sha))
    assert main(["report", str(journal), "--input", str(fleet), "--set",
                 "speed_limit=200"]) == 0
    assert main(["report", str(journal), "--input", str(fleet)]) == 2


def test_invalid_line_fixed_by_a_later_run_is_retired(tmp_path: Path) -> None:
    """An invalid record (no body hash) stops counting once a later run sent that task."""
    journal = tmp_path / "o.jsonl"
    journal.write_bytes(rec("A", 3, "invalid", code="validation", msg="bad")
                        + rec("B", 5, "succeeded", attempts=1, elapsed=5, task_id="t3"))
    code, data = as_json(journal)
    assert (code, data["lines"], data["not_done"]) == (0, 1, 0)
    journal.write_bytes(rec("A", 5, "succeeded", attempts=1, elapsed=5, task_id="t3")
                        + rec("A", 3, "invalid", code="validation", msg="bad"))
    assert as_json(journal)[1]["not_done"] == 1  # the same run: another line of that task


def test_most_common_failures_group_by_error_code(tmp_path: Path) -> None:
    """Each 404 has its own message; they are one failure kind, with an example."""
    journal = tmp_path / "o.jsonl"
    journal.write_bytes(b"".join(
        rec("A", n, "failed", attempts=1, elapsed=5, code="SMS.1801", http=404,
            msg=f"task t{n} not found") for n in (4, 2, 3)))
    _, data = as_json(journal)
    assert data["top_failures"] == [{"error_code": "SMS.1801", "error_msg": "task t2 not found",
                                     "count": 3, "example_line": 2}]


def test_report_counts_an_invalid_line_whose_record_is_over_1_mib(tmp_path: Path,
                                                                   cli: InProcess) -> None:
    """A bad enum value is quoted in its message: the outcome record is over 1 MiB, and
    `report` still counts it as a line, not as a cut record."""
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"task_id": "t1", "body": {"speed_limit": 1}},
        {"task_id": "e", "body": {"type": "x" * (1024 * 1024 - 100)}}])
    out = tmp_path / "r.jsonl"
    assert cli("run", str(source), "--simulate", "--rate", "0", "--out", str(out),
                    cwd=tmp_path).returncode == 1
    result = cli("report", str(out), "--json", cwd=tmp_path)
    figures = orjson.loads(result.stdout)
    assert figures["cut_lines"] == 0, figures
    assert figures["lines"] == 2, figures
    assert figures["not_done"] == 1, figures
    assert result.returncode == 1


def test_input_totals_add_up_with_invalid_lines(tmp_path: Path) -> None:
    """Issue 23 (5): with --input, an invalid line's record counts in the statuses, and an
    invalid line without a record as "no record": the statuses and no_record add up to the
    lines (they were 1 993 + 1 + 0 for 2 000 lines)."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join([*INPUT_LINES[:4], b"{not json"]) + b"\n")
    journal = tmp_path / "o.jsonl"  # killed before lines 4 and 5 had a record
    journal.write_bytes(rec("A", 1, "succeeded", attempts=1, elapsed=5)
                        + rec("A", 2, "succeeded", attempts=1, elapsed=5)
                        + rec("A", 3, "invalid", code="validation", msg="bad speed_limit"))
    code, data = as_json(journal, "--input", source)
    assert code == 1
    assert data["lines"] == 5
    assert data["by_status"] == {"succeeded": 2, "failed": 0, "invalid": 1, "skipped": 0}
    assert data["no_record"] == 2
    assert sum(data["by_status"].values()) + data["no_record"] == data["lines"]
    assert data["done"] == 2
