"""atheris (libFuzzer) target for the reader and the planner: `records.read_lines` -> `Planner`.

    python fuzz/fuzz_reader.py -runs=10000 -seed=1 [corpus_dir]   # bounded, as in test_records.py
    python fuzz/fuzz_reader.py -max_total_time=600 corpus/        # a longer local session

The line limit is lowered to 64 bytes so that lines around it are common. The first input byte
is a set of flags (bit 0: put a UTF-8 BOM in front; bit 1: gzip the rest; bits 2-7: cut the
gzip stream to that many 64ths, 0 = whole), the rest is the file. Every invariant is asserted:
nothing but `Line`/`InvalidLine` comes out, numbers increase, a whole input gives exactly one
item per non-blank line, every invalid item says why, and every planned body re-validates to
the same canonical bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys

import atheris

with atheris.instrument_imports():
    import orjson

    from batchsms.lines import reader as records
    from batchsms.lines.bodies import Planned, Planner, canonical_json
    from batchsms.lines.reader import InvalidLine, Line
    from batchsms.lines.schema import validate

LIMIT = 64
BOM = b"\xef\xbb\xbf"
PLANNER = Planner({})


def non_blank_numbers(data: bytes) -> list[int]:
    """The model: line numbers of a plain `split(b"\\n")` whose line is not blank."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    numbers = []
    for number, raw in enumerate(parts, 1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        raw = raw.removesuffix(b"\r")
        if len(raw) > LIMIT or raw.strip():
            numbers.append(number)
    return numbers


def test_one_input(raw: bytes) -> None:
    flags, data = (raw[0], raw[1:]) if raw else (0, b"")
    if flags & 1:
        data = BOM + data
    gzipped = data.startswith(b"\x1f\x8b")
    if flags & 2:
        packed = gzip.compress(data, mtime=0)
        cut = flags >> 2
        stream: io.IOBase = gzip.GzipFile(
            fileobj=io.BytesIO(packed[: len(packed) * cut // 64] if cut else packed), mode="rb")
        gzipped = True
    elif gzipped:
        stream = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
    else:
        stream = io.BytesIO(data)
    numbers = []
    for item in records.read_lines(stream, LIMIT):  # type: ignore[arg-type]
        numbers.append(item.number)
        if isinstance(item, InvalidLine):
            assert item.errors, item
            assert all(p.message for p in item.errors), item
            continue
        assert isinstance(item, Line), item
        planned = PLANNER.plan(item)
        if isinstance(planned, Planned):
            again, problems = validate(orjson.loads(planned.body))
            assert not problems, problems
            assert canonical_json(again) == planned.body
            assert hashlib.sha256(planned.body).hexdigest() == planned.sha256
        else:
            assert isinstance(planned, InvalidLine)
            assert planned.errors
    assert numbers == sorted(set(numbers)), numbers
    if not gzipped or (flags & 2 and not flags >> 2):
        assert numbers == non_blank_numbers(data), (numbers, non_blank_numbers(data))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
