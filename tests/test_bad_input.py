"""A corpus of nasty input files, built at test time: each gives clear outcomes and no crash.

For every file, `batchsms validate FILE --out O` and `batchsms run FILE --simulate --out O` (for
one file real subprocesses, for the others called in this process) must exit 0 or 1 (never a
traceback), write exactly one outcome per non-blank line with the right line number, explain
each bad line (with its line number on `validate`'s stdout), and still process the good lines
around a bad one.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.lines.reader import MAX_LINE_BYTES
from tests.jsonl import read_jsonl
from tests.processes import InProcess, batchsms, peak_rss_kib

MiB = 1024 * 1024


def good(n: int, task_id: str | None = None) -> bytes:
    """A valid line (without its newline)."""
    return orjson.dumps({"task_id": task_id or f"t{n}", "body": {"speed_limit": n % 1000}})


def lines(*raw: bytes, end: bytes = b"\n") -> bytes:
    return b"".join(r + end for r in raw)


def padded(size: int, task_id: str = "pad") -> bytes:
    """A valid line of exactly `size` bytes (spaces are JSON whitespace)."""
    head = orjson.dumps({"task_id": task_id, "body": {"speed_limit": 7}})
    return head[:-1] + b" " * (size - len(head)) + b"}"


BIG_LINE = b'{"task_id":"big","body":{"name":"' + b"a" * (10 * MiB) + b'"}}'


@dataclass(frozen=True)
class Case:
    """An input file and what each of its non-blank lines must become.

    `expect` maps line number -> None (valid) or a substring of one of its problem messages.
    """

    content: bytes
    expect: dict[int, str | None]
    suffix: str = ".jsonl"
    sha_of: dict[int, dict[str, Any]] = field(default_factory=dict)  # valid line -> body sent


def _truncated_gzip() -> Case:
    data = lines(*(good(i) for i in range(1, 1001)))  # ~45 KB: a few of the reader's buffers
    packed = gzip.compress(data)
    cut = packed[: len(packed) * 6 // 10]
    # the reader cannot yield more than the complete lines of what decompresses before the cut
    available = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    return Case(cut, {-1: f"<= {available}"}, suffix=".jsonl.gz")


CASES: dict[str, Callable[[], Case]] = {
    "gzip_truncated": _truncated_gzip,
    "gzip_garbage_appended": lambda: Case(
        gzip.compress(lines(good(1), good(2))) + b"this is not gzip\n",
        {1: None, 2: None, 3: "input could not be read past line 2"}, suffix=".jsonl.gz"),
    "ten_mb_line": lambda: Case(
        lines(good(1), BIG_LINE, good(3)),
        {1: None, 2: f"line is {len(BIG_LINE)} bytes, longer than the limit", 3: None}),
    "nul_bytes": lambda: Case(
        lines(good(1), b'{"task_id": "a\x00b", "body": {"speed_limit": 1}}', b"\x00\x00\x00",
              b"\x00", b'{"task_id": "n\\u0000ul", "body": {"speed_limit": 1}}',
              b'{"task_id":"t6",\x00"body":{"speed_limit":6}}', good(7)),
        {1: None, 2: "control character", 3: "not valid JSON", 4: "not valid JSON", 5: None,
         6: "not valid JSON", 7: None}),
    "mixed_encodings": lambda: Case(
        lines(good(1), '{"task_id": "café", "body": {"speed_limit": 1}}'.encode("latin-1"),
              '{"task_id": "u16", "body": {"speed_limit": 1}}'.encode("utf-16"),
              b"\xef\xbb\xbf" + good(4), b'{"task_id": "\xed\xa0\x80"}', good(6),
              '{"task_id": "中文", "body": {"name": "迁移_任务-1"}}'.encode()),
        {1: None, 2: "not valid UTF-8 at byte 17", 3: "not valid UTF-8 at byte 1",
         4: "byte order mark", 5: "not valid UTF-8", 6: None, 7: None}),
    "bom_at_start_then_crlf": lambda: Case(
        b"\xef\xbb\xbf" + lines(good(1), b"", good(3), end=b"\r\n"), {1: None, 3: None}),
    "huge_numbers": lambda: Case(
        lines(good(1), b'{"task_id":"a","body":{"speed_limit":' + b"1" * 500 + b"}}",
              b'{"task_id":' + b"9" * 500 + b',"body":{"speed_limit":1}}',
              b'{"task_id":"b","body":{"speed_limit":18446744073709551616}}',
              b'{"task_id":"c","body":{"target_server":{"memory":9223372036854775808}}}',
              b'{"task_id":"d","body":{"speed_limit":-' + b"1" * 500 + b"}}",
              b'{"task_id":"e","body":{"speed_limit":1e400}}',
              b'{"task_id":"f","body":{"target_server":{"memory":9223372036854775807}}}'),
        {1: None, 2: "number", 3: "number", 4: "body.speed_limit", 5: "9223372036854775807",
         6: "number", 7: "number", 8: None}),
    "deep_nesting": lambda: Case(
        lines(good(1), b'{"task_id":"a","body":{"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
              b'{"task_id":"a","body":{"target_server":' + b'{"a":' * 10_000 + b"1"
              + b"}" * 10_000 + b"}}",
              b'{"task_id":"a","body":{"target_server":{"disks":' + b"[" * 1000 + b"]" * 1000
              + b"}}}",
              b'{"task_id":"a","body":{"clone_server":' + b'{"a":' * 1000 + b"1" + b"}" * 1000
              + b"}}", good(6)),
        {1: None, 2: "depth", 3: "depth", 4: "body.target_server.disks[0]",
         5: "unknown field 'a'", 6: None}),
    "lone_surrogates": lambda: Case(
        lines(good(1), b'{"task_id":"\\ud800","body":{"speed_limit":1}}',
              b'{"task_id":"a","body":{"name":"\\udfff"}}', b'{"task_id":"a","body":{"\\ud800":1}}',
              b'{"task_id":"e","body":{"speed_limit":1},"ref":"\\ud83d\\ude00"}', good(6)),
        {1: None, 2: "surrogate", 3: "surrogate", 4: "surrogate", 5: None, 6: None}),
    "carriage_returns": lambda: Case(
        good(1) + b"\n\r\n\r\r\n" + b"\r" + good(5) + b"\n" + good(6) + b"\r\r\n" + b"\r",
        {1: None, 4: None, 5: None}),
    "crlf_file": lambda: Case(lines(good(1), b"", good(3), b"  ", good(5), end=b"\r\n"),
                              {1: None, 3: None, 5: None}),
    "no_trailing_newline": lambda: Case(good(1) + b"\n" + good(2), {1: None, 2: None}),
    "no_trailing_newline_bad_last": lambda: Case(good(1) + b"\n" + b'{"task_id":', {
        1: None, 2: "not valid JSON"}),
    "empty_file": lambda: Case(b"", {}),
    "only_blank_lines": lambda: Case(b"\n \n\t\n\r\n\x0b\x0c\n   ", {}),
    "line_at_the_limit": lambda: Case(
        lines(good(1), padded(MAX_LINE_BYTES), padded(MAX_LINE_BYTES + 1), good(4))
        + padded(MAX_LINE_BYTES, "crlf") + b"\r\n" + padded(MAX_LINE_BYTES + 1) + b"\r\n"
        + padded(MAX_LINE_BYTES, "last"),
        {1: None, 2: None, 3: f"line is {MAX_LINE_BYTES + 1} bytes", 4: None, 5: None,
         6: f"line is {MAX_LINE_BYTES + 1} bytes", 7: None}),
    # thousands of unknown keys, each named (the last one too); each costs a "did you mean"
    # search, so a few thousand say it as well as tens of thousands did, in a tenth of the time
    "very_many_keys": lambda: Case(
        lines(good(1), b'{"task_id":"m","body":{' + b",".join(
            b'"k%d":%d' % (i, i) for i in range(2_500)) + b"}}",
            b'{"task_id":"n","body":{"target_server":{' + b",".join(
                b'"networks%d":null' % i for i in range(2_000)) + b"}}}", good(4)),
        {1: None, 2: "unknown field 'k2499'", 3: "unknown field 'networks1999'", 4: None}),
    "duplicate_keys": lambda: Case(
        lines(good(1), b'{"task_id":"a","body":{"speed_limit":5,"speed_limit":2000}}',
              b'{"task_id":"b","body":{"speed_limit":2000,"speed_limit":5}}',
              b'{"task_id":"c","task_id":"d","body":{"speed_limit":1}}'),
        # the last value of a duplicated key wins (as in Python's json and orjson)
        {1: None, 2: "got 2000", 3: None, 4: None},
        sha_of={3: {"speed_limit": 5}, 4: {"speed_limit": 1}}),
}


def command(kind: str, source: Path, out: Path) -> list[str]:
    if kind == "validate":
        return ["validate", str(source), "--out", str(out)]
    return ["run", str(source), "--simulate", "--out", str(out), "--rate", "0",
            "--log-format", "json", "--no-progress", "--allow-empty"]  # test_empty_input.py


REAL_CLI = "mixed_encodings"
"""The one file `run` and `validate` read as subprocesses; for the others their command lines
are called in this process (the file, not the process boundary, is what each case is about)."""


@pytest.mark.parametrize("kind", ["validate", "run"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_nasty_file_gives_one_clear_outcome_per_line(
        tmp_path: Path, name: str, kind: str, cli: InProcess) -> None:
    case = CASES[name]()
    source = tmp_path / f"{name}{case.suffix}"
    source.write_bytes(case.content)
    out = tmp_path / "outcomes.jsonl"
    run = batchsms if name == REAL_CLI else cli
    result = run(*command(kind, source, out), cwd=tmp_path)
    returncode = result.returncode
    stdout = result.stdout.decode(errors="replace")
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr + stdout, stderr[-3000:]
    assert returncode in (0, 1), stderr[-3000:]
    records = read_jsonl(out) if out.exists() else []
    by_line = {r["line"]: r for r in records}
    assert len(by_line) == len(records), "a line got more than one outcome"
    expect: dict[int, str | None] = dict(case.expect)
    if -1 in expect:  # the truncated gzip: valid lines 1..k, then one error ending the input
        available = int(str(expect.pop(-1)).removeprefix("<= "))
        k = len(records) - 1
        assert 1 <= k <= available, (k, available)
        expect = dict.fromkeys(range(1, k + 1))
        expect[k + 1] = f"input could not be read past line {k}"
    assert sorted(by_line) == sorted(expect), "one outcome per non-blank line, numbered right"
    ok_status = "valid" if kind == "validate" else "succeeded"
    for number, problem in expect.items():
        record = by_line[number]
        if problem is None:
            assert record["status"] == ok_status, record
            assert record["errors"] == []
        else:
            assert record["status"] == "invalid", record
            assert record["error_code"] == "validation"
            assert record["attempts"] == 0
            messages = [f"{e['path']}: {e['message']}" for e in record["errors"]]
            assert any(problem in m for m in messages), (problem, messages[:5])
            if kind == "validate":
                assert f"line {number}: " in stdout
    for number, body in case.sha_of.items():
        sent = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        assert by_line[number]["body_sha256"] == hashlib.sha256(sent).hexdigest()
    invalid = sum(1 for p in expect.values() if p is not None)
    assert returncode == (1 if invalid else 0), stderr[-3000:]
    if kind == "validate":
        valid = len(expect) - invalid
        assert stdout.endswith(f"{len(expect)} lines: {valid} valid, {invalid} invalid\n")


@pytest.mark.parametrize("kind", ["validate", "run"])
def test_unreadable_input_exits_2_with_one_line(tmp_path: Path, kind: str,
                                                cli: InProcess) -> None:
    """An absent input (read by a real subprocess: its exit status) and a directory (in this
    process): exit 2, one line on stderr naming the input, nothing on stdout."""
    out = tmp_path / "o.jsonl"
    for source, run in ((tmp_path / "missing.jsonl", batchsms), (tmp_path, cli)):
        result = run(*command(kind, source, out), cwd=tmp_path)
        stderr = result.stderr.decode()
        assert result.returncode == 2, stderr
        assert "Traceback" not in stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert f"cannot read input {str(source)!r}" in stderr
        assert result.stdout == b""
        if source.name == "missing.jsonl":
            assert not out.exists()


def _peak_kib(tmp_path: Path, kind: str, source: Path) -> int:
    out = tmp_path / f"o-{source.stem}-{kind}.jsonl"
    result = batchsms(*command(kind, source, out), peak_rss=True)
    assert result.returncode == 1, result.stderr[-2000:]
    return peak_rss_kib(result)


@pytest.mark.parametrize("kind", ["validate", "run"])
def test_a_ten_mb_line_is_never_held_whole(tmp_path: Path, kind: str) -> None:
    small = tmp_path / "small.jsonl"
    small.write_bytes(lines(good(1), b"not json", good(3)))
    big = tmp_path / "big.jsonl"
    big.write_bytes(lines(good(1), BIG_LINE, good(3)))
    baseline, peak = _peak_kib(tmp_path, kind, small), _peak_kib(tmp_path, kind, big)
    # read in chunks of at most 1 MiB: holding the 10 MB line whole would add 10 MB or more
    assert peak - baseline < 6 * 1024, (baseline, peak)
