"""Reading JSONL input: lines, numbers, encodings, gzip, limits and envelopes (CONTRACT §1)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsms.errors import UsageError
from batchsms.lines import reader as records
from batchsms.lines.bodies import Planned, checked_lines
from batchsms.lines.reader import (
    MAX_LINE_BYTES,
    InvalidLine,
    Line,
    iter_raw_lines,
    open_input,
    parse_line,
    read_lines,
)
from batchsms.lines.schema import validate
from tests.properties import BOUNDED, check_problems, examples, json_values

TID = "ef3b9722-07a0-40ae-89b0-889ee96d0001"
GOOD = b'{"task_id": "' + TID.encode() + b'", "body": {"speed_limit": 200}, "ref": "web-01"}'
BOM = b"\xef\xbb\xbf"


def read(data: bytes) -> list[Line | InvalidLine]:
    return list(read_lines(io.BytesIO(data)))


def only_errors(item: Line | InvalidLine) -> list[tuple[str, str]]:
    assert isinstance(item, InvalidLine), item
    return [(p.path, p.message) for p in item.errors]


# -- lines and numbers --------------------------------------------------------------------------


def test_good_line() -> None:
    """A sound line becomes a Line with its number, task_id, ref and body."""
    assert read(GOOD + b"\n") == [Line(1, TID, "web-01", {"speed_limit": 200})]


def test_bom_at_start_is_ignored() -> None:
    """A UTF-8 BOM before the first line is not part of it."""
    assert read(b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD) == [
        Line(1, TID, "web-01", {"speed_limit": 200}), Line(2, TID, "web-01", {"speed_limit": 200})]


def test_bom_elsewhere_is_an_error() -> None:
    """Only the file's first bytes may be a BOM."""
    items = read(GOOD + b"\n\xef\xbb\xbf" + GOOD + b"\n")
    assert isinstance(items[0], Line)
    assert only_errors(items[1])[0][0] == "line"


def test_blank_lines_get_no_outcome_but_count() -> None:
    """Blank and whitespace-only lines are skipped; numbers stay 1-based and count them."""
    data = b"\n   \n\t\r\n" + GOOD + b"\n\n \x0c \n" + GOOD + b"\n\n"
    assert [(type(i).__name__, i.number) for i in read(data)] == [("Line", 4), ("Line", 7)]


def test_empty_input() -> None:
    """No lines, no items."""
    assert read(b"") == []
    assert read(b"\xef\xbb\xbf") == []


def test_crlf_and_missing_final_newline() -> None:
    """CRLF line ends and a last line without newline read like LF lines."""
    items = read(GOOD + b"\r\n" + GOOD + b"\r\n" + GOOD)
    assert [i.number for i in items] == [1, 2, 3]
    assert all(isinstance(i, Line) for i in items)


def test_not_utf8() -> None:
    """Bytes that are not UTF-8 make the line invalid, with the byte position."""
    (item,) = read(b'{"task_id": "a\xff"}\n')
    assert only_errors(item) == [("line", "not valid UTF-8 at byte 15")]
    assert item.number == 1


@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b'{"task_id": "a",}', b"nul", b"\x00",
                                 b'{"a": NaN}', b'"\\ud800"'])
def test_not_json(raw: bytes) -> None:
    """Text that is not JSON is one problem at `line`."""
    (item,) = read(raw + b"\n")
    ((path, message),) = only_errors(item)
    assert path == "line"
    assert message.startswith("not valid JSON at column ")
    assert "(char " not in message  # the decoder's "line 1 column 5 (char 4)"


@pytest.mark.parametrize(("raw", "kind"), [(b"[]", "an array"), (b"1", "an integer"),
                                           (b'"x"', "a string"), (b"null", "null"),
                                           (b"true", "a boolean"), (b"1.5", "a number")])
def test_not_an_object(raw: bytes, kind: str) -> None:
    """A JSON value that is not an object is reported as such."""
    (item,) = read(raw)
    ((path, message),) = only_errors(item)
    assert path == "line"
    assert message.startswith(f"must be a JSON object, got {kind}")


def test_an_invalid_line_does_not_stop_the_rest() -> None:
    """Every line is read whatever happened to the one before."""
    items = read(b"{\n" + GOOD + b"\n[1]\n" + GOOD + b"\n")
    assert [type(i).__name__ for i in items] == ["InvalidLine", "Line", "InvalidLine", "Line"]


# -- the 1 MiB limit ----------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid line of exactly `size` bytes (JSON allows trailing spaces)."""
    return GOOD + b" " * (size - len(GOOD))


class WatchedStream(io.BytesIO):
    """Records the largest chunk a reader asked for, to prove lines are not buffered whole."""

    largest = 0

    def readline(self, size: int | None = -1, /) -> bytes:
        chunk = super().readline(size)
        self.largest = max(self.largest, len(chunk))
        return chunk


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b""])
def test_line_of_exactly_the_limit_is_read(newline: bytes) -> None:
    """1 MiB, newline not counted, is allowed."""
    items = read(padded(MAX_LINE_BYTES) + newline)
    assert [type(i).__name__ for i in items] == ["Line"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.parametrize("size", [MAX_LINE_BYTES + 1, MAX_LINE_BYTES + 2, 5 * MAX_LINE_BYTES + 7])
def test_too_long_line_is_reported_and_the_next_read(newline: bytes, size: int) -> None:
    """A longer line is one problem with its size; the next line is still parsed."""
    stream = WatchedStream(GOOD + newline + padded(size) + newline + GOOD + newline)
    items = list(read_lines(stream))
    assert [(type(i).__name__, i.number) for i in items] == [
        ("Line", 1), ("InvalidLine", 2), ("Line", 3)]
    assert only_errors(items[1]) == [
        ("line", f"line is {size} bytes, longer than the limit of {MAX_LINE_BYTES} bytes")]
    assert stream.largest <= MAX_LINE_BYTES + 2


def test_too_long_last_line_without_newline() -> None:
    """An over-long last line with no newline is reported too."""
    items = read(GOOD + b"\n" + padded(MAX_LINE_BYTES + 1))
    assert only_errors(items[1])[0][1].startswith(f"line is {MAX_LINE_BYTES + 1} bytes")


# -- gzip and stdin -----------------------------------------------------------------------------


def test_gzip_file(tmp_path: Path) -> None:
    """A gzip file is decompressed, whatever its name."""
    for name in ("in.jsonl.gz", "in.jsonl"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(GOOD + b"\n\n" + GOOD + b"\n"))
        with open_input(str(path)) as stream:
            assert [i.number for i in read_lines(stream)] == [1, 3]


def test_truncated_gzip_is_an_error_line(tmp_path: Path) -> None:
    """A cut gzip stream ends the input with one error line, never a traceback."""
    data = gzip.compress(b"".join(GOOD + b"\n" for _ in range(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with open_input(str(path)) as stream:
        items = list(read_lines(stream))
    assert all(isinstance(i, Line) for i in items[:-1])
    last = items[-1]
    assert isinstance(last, InvalidLine)
    assert last.number == len(items)
    assert only_errors(last)[0][1].startswith("input could not be read past line")
    assert "the gzip stream is cut short" in only_errors(last)[0][1]


def test_corrupt_gzip_is_an_error_line(tmp_path: Path) -> None:
    """Garbage after gzip magic bytes is one error line."""
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    with open_input(str(path)) as stream:
        (item,) = list(read_lines(stream))
    assert only_errors(item)[0][0] == "line"
    assert "the gzip stream is corrupt" in only_errors(item)[0][1]


def test_empty_gz_file(tmp_path: Path) -> None:
    """An empty *.gz file is an empty input."""
    path = tmp_path / "empty.jsonl.gz"
    path.write_bytes(b"")
    with open_input(str(path)) as stream:
        assert list(read_lines(stream)) == []


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    """A file that cannot be opened raises UsageError naming it."""
    with pytest.raises(UsageError, match="cannot read input"):
        open_input(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UsageError, match="cannot read input"):
        open_input(str(tmp_path))


@pytest.mark.parametrize("compress", [False, True])
def test_stdin_plain_and_gzip(compress: bool) -> None:
    """`-` reads standard input, gzip-compressed or not."""
    data = b"\xef\xbb\xbf" + GOOD + b"\n{\n"
    result = subprocess.run(
        [sys.executable, "-m", "batchsms", "validate", "-"],
        input=gzip.compress(data) if compress else data, capture_output=True, timeout=60,
        check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout.decode().splitlines()[-1] == "2 lines: 1 valid, 1 invalid"
    assert b"line 2: line: not valid JSON" in result.stdout


# -- the envelope -------------------------------------------------------------------------------


def line(**fields: Any) -> bytes:
    return orjson.dumps(fields)


@pytest.mark.parametrize(("data", "expected"), [
    ({"body": {"speed_limit": 1}}, [("task_id", "required: a string of 1 to 36 characters")]),
    ({"task_id": None, "body": {}}, [("task_id", "required: a string of 1 to 36 characters")]),
    ({"task_id": "", "body": {}}, [("task_id", "must be 1 to 36 characters, got 0")]),
    ({"task_id": "x" * 37}, [("task_id", "must be 1 to 36 characters, got 37")]),
    ({"task_id": 12}, [("task_id", "must be a string, got an integer")]),
    ({"task_id": TID, "ref": 7}, [("ref", "must be a string, got an integer")]),
    ({"task_id": TID, "ref": "r" * 257}, [("ref", "must be at most 256 characters, got 257")]),
    ({"task_id": TID, "body": []}, [("body", "must be an object (PutTaskReq), got an array")]),
    ({"task_id": TID, "body": "x"}, [("body", "must be an object (PutTaskReq), got a string")]),
    ({"task_id": TID, "Body": {}}, [
        ("Body", "unknown key 'Body': a line holds only task_id, op, body, ref and expect")]),
    ({"taskid": TID, "ref": 1, "x": None}, [
        ("task_id", "required: a string of 1 to 36 characters"),
        ("ref", "must be a string, got an integer"),
        ("taskid", "unknown key 'taskid': a line holds only task_id, op, body, ref and expect"),
        ("x", "unknown key 'x': a line holds only task_id, op, body, ref and expect")]),
])
def test_envelope_errors(data: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    """Every envelope problem of a line is reported, with its key as path."""
    item = parse_line(3, line(**data))
    assert isinstance(item, InvalidLine)
    assert item.number == 3
    assert only_errors(item) == expected


def test_envelope_limits_accepted() -> None:
    """36-character task_id, 256-character ref, 1-character task_id, no ref, no body."""
    assert parse_line(1, line(task_id="x" * 36, ref="r" * 256)) == Line(1, "x" * 36, "r" * 256,
                                                                       None)
    assert parse_line(1, line(task_id="中", ref=None, body=None)) == Line(1, "中", None, None)


def test_invalid_envelope_keeps_what_it_can() -> None:
    """An invalid line still carries its task_id and ref when they are strings."""
    item = parse_line(1, line(task_id="x" * 37, ref="r1", extra=1))
    assert isinstance(item, InvalidLine)
    assert (item.task_id, item.ref) == ("x" * 37, "r1")
    item = parse_line(1, line(task_id=5, ref=["r"]))
    assert isinstance(item, InvalidLine)
    assert (item.task_id, item.ref) == (None, None)


def test_duplicate_keys_last_wins() -> None:
    """Duplicate keys: the last one wins (as in orjson and most parsers).

    The bytes sent are re-serialised from what was validated, so validator and service can
    never disagree on which value counts.
    """
    raw = b'{"task_id": "a", "task_id": "b", "body": {"speed_limit": 1, "speed_limit": 2}}'
    assert parse_line(1, raw) == Line(1, "b", None, {"speed_limit": 2})
    raw = b'{"task_id": "a", "body": {"speed_limit": 1, "speed_limit": 5000}}'
    item = parse_line(1, raw)
    assert isinstance(item, Line)
    assert validate(item.body)[1][0].path == "body.speed_limit"


# -- properties: the reader against a model ----------------------------------------------------
# Any bytes give exactly one item per non-blank line, with the line numbers of a plain
# `split(b"\\n")`; with the limit lowered to a few bytes, lines around the limit, a BOM, CR/LF
# and blank lines all meet. Files (plain, gzip, gzip cut short) go through `checked_lines` (the
# reader and the Planner, as `validate` and `run` use them) without raising.

SMALL_LIMIT = 24
ENVELOPE_PATHS = {"line", "task_id", "ref", "body"}


def model_lines(data: bytes, limit: int) -> dict[int, str]:
    """Line number -> "blank" | "long" | "text", for every line of `data`, as CONTRACT §1/§10."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":  # a final newline ends the last line, it does not start one
        parts.pop()
    kinds: dict[int, str] = {}
    for number, raw in enumerate(parts, 1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if raw.endswith(b"\r"):  # CRLF: the newline is not part of the line
            raw = raw[:-1]
        if len(raw) > limit:
            kinds[number] = "long"
        elif raw.strip():
            kinds[number] = "text"
        else:
            kinds[number] = "blank"
    return kinds


line_parts = st.lists(
    st.sampled_from([b"", b" ", b"\r", b"\t", b"\x0b", b"{}", b"[]", b"1", b'{"task_id":"a"}',
                     b'{"task_id":"ab","body":{"speed_limit":2}}'[:SMALL_LIMIT], BOM, b"\x00",
                     b"\xff", b"x" * (SMALL_LIMIT - 1), b"y" * SMALL_LIMIT,
                     b"z" * (SMALL_LIMIT + 1), b"w" * (SMALL_LIMIT + 2), b"v" * (SMALL_LIMIT + 3),
                     b"u" * (3 * SMALL_LIMIT)])
    | st.binary(max_size=2 * SMALL_LIMIT),
    max_size=12)
newlines = st.sampled_from([b"\n", b"\r\n"])


@st.composite
def jsonl_bytes(draw: st.DrawFn) -> bytes:
    parts = draw(line_parts)
    out = b"".join(part + draw(newlines) for part in parts)
    if parts and draw(st.booleans()):
        out = out.removesuffix(b"\n")  # no final newline (CRLF loses only its LF)
    if draw(st.booleans()):
        out = BOM + out
    return out


def check_reader(data: bytes, limit: int) -> None:
    kinds = model_lines(data, limit)
    want = {n: k for n, k in kinds.items() if k != "blank"}
    raw = list(iter_raw_lines(io.BytesIO(data), limit))
    assert [n for n, _, _ in raw] == list(range(1, len(raw) + 1))
    items = list(records.read_lines(io.BytesIO(data), limit))
    got = [item.number for item in items]
    assert got == sorted(want), (got, want)
    for item in items:
        assert isinstance(item, Line | InvalidLine)
        if want[item.number] == "long":
            assert isinstance(item, InvalidLine)
            assert item.errors[0].path == "line"
            assert "longer than the limit" in item.errors[0].message
        if isinstance(item, InvalidLine):
            assert item.errors, item
            check_problems(item.errors, ENVELOPE_PATHS | {item.errors[0].path.split(".")[0]})


@BOUNDED
@given(jsonl_bytes())
def test_reader_gives_one_item_per_non_blank_line_around_the_limit(data: bytes) -> None:
    """With the limit lowered to a few bytes, every line kind meets every other."""
    check_reader(data, SMALL_LIMIT)


@BOUNDED
@given(st.binary(max_size=400))
def test_reader_gives_one_item_per_non_blank_line_for_any_bytes(data: bytes) -> None:
    """Any bytes: lines numbered in order, one Line or InvalidLine per non-blank line."""
    check_reader(data, records.MAX_LINE_BYTES)


def check_file(content: bytes, suffix: str) -> list[Planned | InvalidLine]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in{suffix}"
        path.write_bytes(content)
        items = list(checked_lines(str(path), {}))
    numbers = [item.number for item in items]
    assert numbers == sorted(set(numbers))
    assert all(n >= 1 for n in numbers)
    for item in items:
        if isinstance(item, Planned):
            assert validate(orjson.loads(item.body))[1] == []
            assert hashlib.sha256(item.body).hexdigest() == item.sha256
        else:
            assert isinstance(item, InvalidLine)
            assert item.errors
    return items


@BOUNDED
@given(jsonl_bytes())
def test_checked_lines_match_the_model_for_plain_files(data: bytes) -> None:
    if data.startswith(b"\x1f\x8b"):  # gzip magic: read as gzip, see below
        return
    items = check_file(data, ".jsonl")
    kinds = model_lines(data, records.MAX_LINE_BYTES)
    assert [i.number for i in items] == [n for n, k in kinds.items() if k != "blank"]


@settings(BOUNDED, max_examples=examples(150))
@given(jsonl_bytes(), st.floats(0, 1), st.binary(max_size=8))
def test_checked_lines_never_raise_on_gzip_cut_or_with_garbage(data: bytes, cut: float,
                                                                garbage: bytes) -> None:
    packed = gzip.compress(data)
    whole = check_file(packed, ".jsonl.gz")
    kinds = model_lines(data, records.MAX_LINE_BYTES)
    assert [i.number for i in whole] == [n for n, k in kinds.items() if k != "blank"]
    for content in (packed[: int(len(packed) * cut)], packed + garbage):
        items = check_file(content, ".jsonl.gz")
        # some of the model's lines, then at most one error line that ends the input
        for item in items[:-1]:
            assert kinds.get(item.number, "blank") != "blank"
        if items and kinds.get(items[-1].number, "blank") == "blank":
            assert isinstance(items[-1], InvalidLine)


# -- properties: any JSON value as a line ----------------------------------------------------------


@BOUNDED
@given(json_values)
def test_arbitrary_json_never_crashes_parse_line(value: object) -> None:
    """Any JSON value as a line: None never (it is not blank), else a Line or InvalidLine."""
    raw = orjson.dumps(value)
    item = parse_line(9, raw)
    assert isinstance(item, Line | InvalidLine)
    assert item.number == 9
    if isinstance(item, InvalidLine):
        keys = set(value) if isinstance(value, dict) else set()
        check_problems(list(item.errors), ENVELOPE_PATHS | keys)
    elif item.body is not None:
        check_problems(validate(item.body)[1], {"body"})


@BOUNDED
@given(json_values)
def test_arbitrary_json_as_line_body(value: object) -> None:
    """Any JSON value as `body` of an otherwise sound line."""
    item = parse_line(1, orjson.dumps({"task_id": TID, "body": value}))
    if isinstance(value, dict) or value is None:
        assert isinstance(item, Line)
    else:
        assert isinstance(item, InvalidLine)
        assert only_errors(item)[0][0] == "body"


def test_raw_lines_keep_their_ending_and_the_limit_counts_without_it() -> None:
    """The bytes handed on keep LF/CRLF (JSON whitespace; no copy per line); 1 MiB excludes it."""
    at_limit = b"x" * MAX_LINE_BYTES
    data = b"a\nb\r\nc" + b"\n" + at_limit + b"\r\n" + at_limit + b"y\n" + b"last"
    assert [(n, r, e is not None) for n, r, e in iter_raw_lines(io.BytesIO(data))] == [
        (1, b"a\n", False), (2, b"b\r\n", False), (3, b"c\n", False),
        (4, at_limit + b"\r\n", False), (5, None, True), (6, b"last", False)]


def test_bom_before_a_first_line_at_the_limit_keeps_it_whole_and_numbers_right() -> None:
    """The BOM is not counted against the limit of the first line, nor does it shift numbers."""
    head = orjson.dumps({"task_id": "pad", "body": {"speed_limit": 7}})
    second = orjson.dumps({"task_id": "t2", "body": {"speed_limit": 2}})
    for size in (MAX_LINE_BYTES - 1, MAX_LINE_BYTES):  # both within the limit
        first = head[:-1] + b" " * (size - len(head)) + b"}"
        items = read(BOM + first + b"\n" + second + b"\n")
        assert items == [Line(1, "pad", None, {"speed_limit": 7}),
                         Line(2, "t2", None, {"speed_limit": 2})], [i[:3] for i in items]
    over = head[:-1] + b" " * (MAX_LINE_BYTES + 1 - len(head)) + b"}"
    items = read(BOM + over + b"\n" + second + b"\n")
    assert [i.number for i in items] == [1, 2]
    assert "longer than the limit" in items[0].errors[0].message  # type: ignore[union-attr]


# -- atheris (libFuzzer), when installed -----------------------------------------------------------

HARNESS = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_reader.py"


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris; wheels for CPython "
                           "3.11 on x86-64 Linux)")
@pytest.mark.parametrize("runs", [2_000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_atheris_reader_harness_bounded_run(tmp_path: Path, runs: int) -> None:
    """`fuzz/fuzz_reader.py` for a fixed number of runs and a fixed seed: no crash. A short run
    (2 000 in the default suite, 10 000 in `-m slow`: the harness works and the shallow paths
    hold); longer sessions are run by hand, as `fuzz/fuzz_reader.py` says."""
    result = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={runs}", "-seed=1", "-max_len=512",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=110, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {runs} runs" in result.stderr


def test_json_error_gives_the_column_within_the_line_in_characters() -> None:
    """One line number (the input's, in the record), and the column in characters from 1:
    after an `é` (two bytes) as after an `e`."""
    items = read(b'{"task_id": "t1"}\n\n{"task_id": "\xc3\xa9", "body": x}\n'
                 b'{"task_id": "e", "body": x}\n')
    assert [item.number for item in items] == [1, 3, 4]
    for item in items[1:]:  # the decoder's own words differ between orjson releases
        [(path, message)] = only_errors(item)
        assert path == "line"
        assert message.startswith("not valid JSON at column 26: unexpected character")
        assert "line 1" not in message


def test_checked_lines_next_and_for_advance_the_same_lines(tmp_path: Path) -> None:
    """`for` runs over the items themselves (CheckedLines.__iter__): a line taken with `next()`
    is not seen again by a loop, and the loop ends where the lines end."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(b'{"task_id": "t%d", "body": {"speed_limit": %d}}\n' % (i, i)
                              for i in range(1, 5)))
    items = checked_lines(str(path), {})
    first = next(items)
    rest = [item.task_id for item in items]
    assert isinstance(first, Planned)
    assert (first.task_id, rest) == ("t1", ["t2", "t3", "t4"])
    assert next(items, None) is None
    assert items.regular
