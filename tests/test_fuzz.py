"""Property tests for the reader, the planner and the validator, bounded in time (CI-friendly).

Where `tests/test_records.py` checks that nothing crashes, these compare against a model:

- any bytes through `records.read_lines` give exactly one item per non-blank line, with the line
  numbers of a plain `split(b"\\n")` (the 1 MiB limit is lowered to a few bytes here, so lines
  around the limit, a BOM, CR/LF and blank lines all meet);
- any bytes in a file (plain, gzip, gzip cut short) through `validate_cmd.checked_lines` (the
  reader and the Planner, as `validate` and `run` use them) never raise;
- any JSON body, and bodies built from the schema's own tables, through `schema.validate`: the
  problems are Problems under `body`, and an accepted body round-trips: its canonical bytes
  re-validate with no problems to the same bytes, with no nulls left in them.

Seeded by hypothesis's database/derandomization settings of the run; each test is a few hundred
examples with no deadline.
"""

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
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchsms import records
from batchsms.plan import Planned, Planner, canonical_json, deep_merge
from batchsms.records import InvalidLine, Line
from batchsms.schema import PUT_TASK_REQ, Field, Kind, ObjectSpec, Problem, validate
from batchsms.validate_cmd import checked_lines

SMALL_LIMIT = 24
BOM = b"\xef\xbb\xbf"
BOUNDED = settings(max_examples=300, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the reader against a model -----------------------------------------------------------------


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


GOOD = orjson.dumps({"task_id": "t", "body": {"speed_limit": 1}})  # 40 bytes
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
    items = list(records.read_lines(io.BytesIO(data)))
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
            assert all(isinstance(p, Problem) and p.message for p in item.errors)


@BOUNDED
@given(jsonl_bytes())
def test_reader_gives_one_item_per_non_blank_line_around_the_limit(data: bytes) -> None:
    """With the limit lowered to a few bytes, every line kind meets every other."""
    with mock.patch.object(records, "MAX_LINE_BYTES", SMALL_LIMIT):
        check_reader(data, SMALL_LIMIT)


@BOUNDED
@given(st.binary(max_size=400))
def test_reader_gives_one_item_per_non_blank_line_for_any_bytes(data: bytes) -> None:
    check_reader(data, records.MAX_LINE_BYTES)


# -- files through checked_lines (reader + Planner) ---------------------------------------------


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


@settings(BOUNDED, max_examples=150)
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


# -- bodies: arbitrary JSON and bodies built from the tables -------------------------------------


def _all_names(spec: ObjectSpec, seen: set[str]) -> set[str]:
    for name, f in spec.fields.items():
        seen.add(name)
        if f.spec is not None:
            _all_names(f.spec, seen)
    return seen


FIELD_NAMES = sorted(_all_names(PUT_TASK_REQ, set()))
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=10)
scalars = (st.none() | st.booleans()
           | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # as orjson reads integers
           | st.integers(min_value=-(10**40), max_value=10**40)  # and beyond, from Python
           | st.floats() | st.text(max_size=30)
           | st.sampled_from(["MBR", "GPT", "LINUX", "BIOS", "OS", "", "1.2.3.4", "::1", "a b"]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(keys, children, max_size=6),
    max_leaves=40)


def from_field(f: Field) -> st.SearchStrategy[Any]:
    """Mostly values the field accepts, sometimes not, sometimes null."""
    kind = f.kind
    if kind is Kind.STRING:
        fits = (st.sampled_from(sorted(f.choices)) if f.choices else
                st.text(min_size=f.min_len, max_size=min(f.max_len, 12)))
        wrong = st.text(max_size=3) | st.integers(0, 9)
    elif kind in (Kind.INTEGER, Kind.LONG):
        fits = st.integers(f.minimum, f.maximum)
        wrong = st.sampled_from([f.maximum + 1, -1, True, 1.0, "1"])
    elif kind is Kind.BOOLEAN:
        fits, wrong = st.booleans(), st.sampled_from([0, "true"])
    else:
        assert f.spec is not None
        one = from_spec(f.spec)
        fits = one if kind is Kind.OBJECT else st.lists(one, max_size=2)
        wrong = st.sampled_from([[], {}, None, [None], 1]) if kind is Kind.ARRAY else \
            st.sampled_from([[], 1])
    return st.one_of(fits, fits, fits, wrong, st.none())


def from_spec(spec: ObjectSpec) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: from_field(f) for k, f in spec.fields.items()})


bodies = from_spec(PUT_TASK_REQ) | json_values


def has_null(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(has_null(v) for v in value)
    return False


def check_body(body: object) -> bool:
    clean, problems = validate(body)
    assert isinstance(problems, list)
    for p in problems:
        assert isinstance(p, Problem)
        assert isinstance(p.path, str)
        assert isinstance(p.message, str)
        assert p.message
        assert p.path == "body" or p.path.startswith(("body.", "body[")), p
    if problems:
        return False
    data = canonical_json(clean)
    again, problems_again = validate(orjson.loads(data))
    assert problems_again == [], problems_again
    assert canonical_json(again) == data  # idempotent: same bytes, same body_sha256
    assert not has_null(orjson.loads(data))  # nulls are dropped, never sent
    return True


@settings(BOUNDED, max_examples=400)
@given(bodies)
def test_any_body_gives_problems_under_body_or_round_trips(body: object) -> None:
    check_body(body)


@settings(BOUNDED, max_examples=300)
@given(from_spec(PUT_TASK_REQ))
def test_bodies_from_the_tables_round_trip_when_accepted(body: dict[str, Any]) -> None:
    if check_body(body):  # the same body with its keys in another order: the same bytes
        reordered = dict(reversed(list(body.items())))
        assert canonical_json(validate(reordered)[0]) == canonical_json(validate(body)[0])


@settings(BOUNDED, max_examples=200)
@given(from_spec(PUT_TASK_REQ), from_spec(PUT_TASK_REQ) | json_values)
def test_planner_sends_the_merged_body_canonically(defaults: dict[str, Any],
                                                   body: object) -> None:
    """--patch/--set under a line's own body: what is sent is validate(merge) in canonical form."""
    if validate(defaults, path="defaults")[1] or not isinstance(body, dict):
        return
    planned = Planner(defaults).plan(Line(7, "t-1", "r", body))
    clean, problems = validate(deep_merge(defaults, body))
    if problems:
        assert isinstance(planned, InvalidLine)
        assert list(planned.errors) == problems
    else:
        assert isinstance(planned, Planned)
        assert planned.body == canonical_json(clean)
        assert planned.sha256 == hashlib.sha256(planned.body).hexdigest()
        check_body(orjson.loads(planned.body))


# -- atheris (libFuzzer), when installed -----------------------------------------------------------

HARNESS = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_reader.py"


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris; wheels for CPython "
                           "3.11 on x86-64 Linux)")
def test_atheris_reader_harness_bounded_run(tmp_path: Path) -> None:
    """`fuzz/fuzz_reader.py` for a fixed number of runs and a fixed seed: no crash. A short run
    (10 000: the harness works and the shallow paths hold); longer sessions are run by hand,
    as `fuzz/fuzz_reader.py` says."""
    result = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=10000", "-seed=1", "-max_len=512",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=110, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done 10000 runs" in result.stderr
