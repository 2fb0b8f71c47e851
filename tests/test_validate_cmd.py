"""`batchsms validate`: problem lines, summary, outcome records and exit codes (CONTRACT §3, §7)."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.cli import main
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import InProcess

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ROOT / "inputs"
TID = "ef3b9722-07a0-40ae-89b0-889ee96d00"
OUTCOME_FIELDS = ["run_id", "line", "task_id", "op", "ref", "status", "http_status", "attempts",
                  "error_code", "error_msg", "errors", "request_id", "body_sha256", "elapsed_ms",
                  "finished_at", "maybe_applied"]
RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

MISTAKES_OUTPUT = """\
line 1: body.speedlimit: unknown field 'speedlimit' (not in PutTaskReq); did you mean 'speed_limit'?
line 2: body.speed_limit: must be between 0 and 1000, got 5000
line 3: body.state: unknown field 'state' (not in PutTaskReq)
line 4: body.speed_limit: must be an integer (Integer), got a string
line 5: body.target_server.os_type: must be one of LINUX, WINDOWS; got 'linux'
line 5: body.target_server.disks[0].partition_style: must be one of GPT, MBR; got 'gpt'
line 7: line: not valid JSON at column 81: trailing comma is not allowed
7 lines: 1 valid, 6 invalid
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, *lines: str | dict[str, Any]) -> Path:
    return write_jsonl(path, lines)


def test_sample_inputs_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    """The Quick start samples validate cleanly: only the summary, exit 0."""
    assert run(capsys, INPUTS / "speed_limit_fleet.jsonl") == (
        0, "50 lines: 50 valid, 0 invalid\n", "")
    assert run(capsys, INPUTS / "retarget_servers.jsonl") == (
        0, "2 lines: 2 valid, 0 invalid\n", "")


def test_typical_mistakes(capsys: pytest.CaptureFixture[str]) -> None:
    """Every problem as `line N: path: message`, then the summary; exit 1."""
    assert run(capsys, INPUTS / "typical_mistakes.jsonl") == (1, MISTAKES_OUTPUT, "")


def test_subprocess_python_m(tmp_path: Path) -> None:
    """`python -m batchsms validate` prints the same and exits 1 for invalid lines."""
    result = subprocess.run([sys.executable, "-m", "batchsms", "validate",
                             str(INPUTS / "typical_mistakes.jsonl")],
                            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, MISTAKES_OUTPUT, "")


@pytest.mark.parametrize("args", [
    ["--set", "speed_limit=5000"],
    ["--set", "speedlimit=5"],
    ["--set", "speed_limit"],
    ["--set", "=5"],
    ["--patch", "/nonexistent/patch.json"],
    ["--bogus-option"],
])
def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """Bad --set/--patch or an unknown option: exit 2 with one line on stderr."""
    code, out, err = run(capsys, INPUTS / "speed_limit_fleet.jsonl", *args)
    assert code == 2
    assert out == ""
    assert err.startswith("batchsms: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("content", "message"), [(b"{", "not valid JSON"),
                                                  (b"[1]", "must hold a JSON object"),
                                                  (b'{"state": "RUNNING"}', "defaults.state")])
def test_bad_patch_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                content: bytes, message: str) -> None:
    """A --patch that is not JSON, not an object, or not a valid body: exit 2."""
    patch = tmp_path / "patch.json"
    patch.write_bytes(content)
    code, _, err = run(capsys, INPUTS / "speed_limit_fleet.jsonl", "--patch", patch)
    assert code == 2
    assert message in err


def test_missing_input_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """main() returns 2 for a missing input, and creates no outcomes file."""
    out = tmp_path / "o.jsonl"
    code, stdout, err = run(capsys, tmp_path / "none.jsonl", "--out", out)
    assert (code, stdout) == (2, "")
    assert err.startswith("batchsms: cannot read input")
    assert not out.exists()


def test_set_and_patch_supply_the_body(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    """Lines without a body are valid once --set/--patch supply one; the line still wins."""
    src = write(tmp_path / "in.jsonl", {"task_id": TID + "01"},
                {"task_id": TID + "02", "body": {"speed_limit": 5}})
    patch = tmp_path / "patch.json"
    patch.write_text('{"region_id": "r1", "speed_limit": 1}')
    out = tmp_path / "o.jsonl"
    code, stdout, _ = run(capsys, src, "--patch", patch, "--set", "speed_limit=100", "--out", out)
    assert (code, stdout) == (0, "2 lines: 2 valid, 0 invalid\n")
    shas = [r["body_sha256"] for r in read_jsonl(out)]
    assert shas == [hashlib.sha256(b'{"region_id":"r1","speed_limit":100}').hexdigest(),
                    hashlib.sha256(b'{"region_id":"r1","speed_limit":5}').hexdigest()]
    code, stdout, _ = run(capsys, src)
    assert code == 1
    assert stdout.splitlines()[0].startswith("line 1: body: required")


def test_out_records(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """One record per non-blank line with the contract's fields, status valid/invalid."""
    src = write(tmp_path / "in.jsonl",
                {"task_id": TID + "01", "body": {"speed_limit": 200}, "ref": "web-01"},
                "",
                "   ",
                {"task_id": TID + "02", "body": {"speed_limit": 2000, "state": "X"}},
                "not json",
                {"task_id": TID + "04", "body": {"name": "迁移"}, "ref": "中"})
    out = tmp_path / "outcomes.jsonl"
    code, stdout, _ = run(capsys, src, "--out", out)
    assert code == 1
    assert stdout.splitlines()[-1] == "4 lines: 2 valid, 2 invalid"
    recs = read_jsonl(out)
    assert [list(r) for r in recs] == [OUTCOME_FIELDS] * 4
    assert [(r["line"], r["task_id"], r["ref"], r["status"]) for r in recs] == [
        (1, TID + "01", "web-01", "valid"),
        (4, TID + "02", None, "invalid"),
        (5, None, None, "invalid"),
        (6, TID + "04", "中", "valid")]
    assert len({r["run_id"] for r in recs}) == 1
    valid, invalid = recs[0], recs[1]
    assert valid["body_sha256"] == hashlib.sha256(b'{"speed_limit":200}').hexdigest()
    assert (valid["error_code"], valid["error_msg"], valid["errors"]) == (None, None, [])
    assert invalid["errors"] == [
        {"path": "body.speed_limit", "message": "must be between 0 and 1000, got 2000"},
        {"path": "body.state", "message": "unknown field 'state' (not in PutTaskReq)"}]
    assert invalid["error_code"] == "validation"
    assert invalid["error_msg"]
    assert invalid["body_sha256"] is None
    assert recs[2]["errors"][0]["path"] == "line"
    for r in recs:
        assert (r["http_status"], r["attempts"], r["request_id"]) == (None, 0, None)
        assert RFC3339_MS.fullmatch(r["finished_at"])


def test_out_is_appended_not_truncated(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    """A second run adds its records after the first run's."""
    out = tmp_path / "outcomes.jsonl"
    src = INPUTS / "typical_mistakes.jsonl"
    run(capsys, src, "--out", out)
    first = out.read_bytes()
    run(capsys, src, "--out", out)
    data = out.read_bytes()
    assert data.startswith(first)
    recs = read_jsonl(out)
    assert len(recs) == 14
    assert len({r["run_id"] for r in recs}) == 2


def test_out_after_a_cut_record_starts_on_a_fresh_line(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    """A journal whose last line was cut gets its next record on a new line."""
    out = tmp_path / "outcomes.jsonl"
    out.write_bytes(b'{"run_id": "x", "line": 1, "sta')
    run(capsys, INPUTS / "retarget_servers.jsonl", "--out", out)
    lines = out.read_bytes().splitlines()
    assert lines[0] == b'{"run_id": "x", "line": 1, "sta'
    assert [orjson.loads(x)["status"] for x in lines[1:]] == ["valid", "valid"]


def test_gzip_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A gzip input validates like the plain one."""
    src = tmp_path / "fleet.jsonl.gz"
    src.write_bytes(gzip.compress((INPUTS / "speed_limit_fleet.jsonl").read_bytes()))
    assert run(capsys, src)[:2] == (0, "50 lines: 50 valid, 0 invalid\n")


def test_empty_input_is_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """No lines: nothing invalid, exit 0."""
    src = write(tmp_path / "blank.jsonl", "", "  ")
    assert run(capsys, src) == (0, "0 lines: 0 valid, 0 invalid\n", "")


def test_validate_and_run_describe_an_invalid_line_the_same_way(tmp_path: Path,
                                                                 cli: InProcess) -> None:
    """One record for an invalid line, whichever command writes it: first problem, and N more."""
    source = write(tmp_path / "in.jsonl",  # (a valid line too: an all-invalid file is refused)
                   {"task_id": "t", "body": {"speedlimit": 1, "type": "x", "state": "RUNNING"}},
                   {"task_id": "ok", "body": {"speed_limit": 1}})
    assert cli("validate", str(source), "--out", str(tmp_path / "v.jsonl"),
                    cwd=tmp_path).returncode == 1
    assert cli("run", str(source), "--simulate", "--out", str(tmp_path / "r.jsonl"),
                    cwd=tmp_path).returncode == 1
    (valid,) = [r for r in read_jsonl(tmp_path / "v.jsonl") if r["line"] == 1]
    (ran,) = [r for r in read_jsonl(tmp_path / "r.jsonl") if r["line"] == 1]
    assert valid["error_msg"] == ran["error_msg"]
    assert ran["error_msg"].startswith("body.speedlimit: unknown field")
    assert ran["error_msg"].endswith("(and 2 more)")
    assert valid["errors"] == ran["errors"]


# -- machine-readable and quiet (issue 23) ------------------------------------------------------


def test_json_prints_one_object_per_invalid_line_then_the_summary(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--json`: the problems of MISTAKES_OUTPUT as objects (the record's `errors`), then one
    `{"summary": ...}` object; exit 1 as in text."""
    code, out, err = run(capsys, INPUTS / "typical_mistakes.jsonl", "--json")
    assert (code, err) == (1, "")
    objects = [orjson.loads(line) for line in out.splitlines()]
    assert objects[-1] == {"summary": {"lines": 7, "valid": 1, "invalid": 6,
                                       "repeated_task_ids": 0}}
    problems = objects[:-1]
    assert [o["line"] for o in problems] == [1, 2, 3, 4, 5, 7]
    assert all(set(o) == {"line", "task_id", "ref", "errors"} for o in problems)
    as_text = [f"line {o['line']}: {e['path']}: {e['message']}" for o in problems
               for e in o["errors"]]
    assert as_text == MISTAKES_OUTPUT.splitlines()[:-1]
    assert problems[-1]["task_id"] is None  # not JSON: no task id could be read


def test_quiet_prints_the_summary_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, INPUTS / "typical_mistakes.jsonl", "--quiet") == (
        1, "7 lines: 1 valid, 6 invalid\n", "")
    code, out, _ = run(capsys, INPUTS / "typical_mistakes.jsonl", "-q", "--json")
    assert (code, [orjson.loads(x) for x in out.splitlines()]) == (
        1, [{"summary": {"lines": 7, "valid": 1, "invalid": 6, "repeated_task_ids": 0}}])


@pytest.mark.parametrize("args", [["MISSING"], ["SAMPLE", "--set", "speed_limit=5000"],
                                  ["SAMPLE", "--out", "SAMPLE"]])
def test_log_format_json_makes_a_refusal_one_event(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path, args: list[str]) -> None:
    """With `--log-format json` given, stderr is JSON only: a refusal is a `validate.refused`
    event (as `run.refused` is for run), exit 2; console: the usual one line."""
    paths = {"MISSING": str(tmp_path / "missing.jsonl"),
             "SAMPLE": str(INPUTS / "speed_limit_fleet.jsonl")}
    argv = [paths.get(a, a) for a in args]
    code, out, err = run(capsys, *argv, "--log-format", "json")
    assert (code, out) == (2, "")
    (event,) = [orjson.loads(line) for line in err.splitlines()]
    assert (event["event"], event["level"], event["exit_code"]) == ("validate.refused", "error", 2)
    code, out, err = run(capsys, *argv, "--log-format", "console")
    assert (code, out) == (2, "")
    assert err.startswith("batchsms: ")
    assert err.count("\n") == 1


# -- task ids on more than one line (issue 23) --------------------------------------------------


def test_repeated_task_ids_are_a_notice_with_examples(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    """Two task ids come back (one on an invalid line too): a warning on stderr with the count
    and the first lines of each, valid lines still valid (exit as without it)."""
    source = write(tmp_path / "in.jsonl",
                   {"task_id": "a", "body": {"speed_limit": 1}},
                   {"task_id": "b", "body": {"speed_limit": 1}},
                   {"task_id": "a", "body": {"speed_limit": 2}},
                   {"task_id": "c", "body": {"speed_limit": 2}},
                   {"task_id": "a", "body": {"speedlimit": 2}},
                   {"task_id": "b", "body": {"speed_limit": 1}})
    code, out, err = run(capsys, source, "--log-format", "json", "--json")
    assert code == 1  # line 5's typo, not the repeats
    (event,) = [orjson.loads(line) for line in err.splitlines()]
    assert (event["event"], event["level"]) == ("validate.repeated_task_ids", "warning")
    assert (event["task_ids"], event["repeating_lines"]) == (2, 3)
    assert event["examples"] == ["a on lines 1, 3, 5", "b on lines 2, 6"]
    assert orjson.loads(out.splitlines()[-1])["summary"]["repeated_task_ids"] == 2
    code, out, err = run(capsys, source, "--log-format", "console", "--quiet")
    assert (code, out) == (1, "6 lines: 5 valid, 1 invalid\n")  # a warning: --quiet shows it
    assert "validate.repeated_task_ids" in err
    assert "a on lines 1, 3, 5" in err


def test_repeats_are_counted_in_bounded_memory() -> None:
    """Past its limit of remembered ids, new ids are not remembered (a repeat of them is not
    seen, and the notice says so); the ids remembered are still caught; five lines shown."""
    from batchsms.lines.repeats import RepeatedIds

    repeats = RepeatedIds(limit=2)
    for number, task_id in enumerate("abcdcaaaaaa", start=1):
        repeats.see(task_id, number)
    notice = repeats.notice()
    assert notice is not None
    assert (notice["task_ids"], notice["repeating_lines"]) == (1, 6)  # "a"; not "c"
    assert notice["examples"] == ["a on lines 1, 6, 7, 8, 9..."]
    assert notice["looked_among_first_task_ids"] == 2
    assert RepeatedIds().notice() is None
