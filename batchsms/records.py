"""Reading the input: JSONL bytes -> `Line` or `InvalidLine` values, one per non-blank line.

Streaming and bounded: a file is read line by line with a length cap, so neither a million lines
nor one 10 MB line is ever held in memory whole. `-` is standard input; gzip is recognised by
its magic bytes (so `*.gz` and a piped `gzip -c` both work). A UTF-8 BOM at the start is ignored.
Every problem of a line becomes an `InvalidLine` with a message and its path; nothing raises past
this module except `UsageError` for an input that cannot be opened at all.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from batchsms.errors import UsageError
from batchsms.schema import Problem

MAX_LINE_BYTES = 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_ENVELOPE_KEYS = frozenset({"task_id", "body", "ref"})


@dataclass(frozen=True, slots=True)
class Line:
    """A line whose envelope is sound; `body` is None when the line carries none."""

    number: int
    task_id: str
    ref: str | None
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line that will not be sent, with every problem found in it."""

    number: int
    task_id: str | None
    ref: str | None
    errors: tuple[Problem, ...]


def open_input(source: str) -> IO[bytes]:
    """Open a path or `-` as a binary stream, decompressing gzip transparently."""
    if source == "-":
        raw: IO[bytes] = sys.stdin.buffer
    else:
        try:
            raw = Path(source).open("rb")  # noqa: SIM115 - closed by the caller's iterator
        except OSError as exc:
            raise UsageError(f"cannot read input {source!r}: {exc.strerror or exc}") from exc
    peek = getattr(raw, "peek", None)
    head = peek(2)[:2] if peek is not None else b""
    if head == _GZIP_MAGIC or (not head and source.endswith(".gz")):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def iter_raw_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yield (line number, bytes without newline, or None with a read error) for every line.

    Lines over MAX_LINE_BYTES are consumed in chunks and reported, never buffered whole.
    A corrupt or truncated gzip stream ends the input with one error line.
    """
    number = 0
    try:
        while True:
            chunk = stream.readline(MAX_LINE_BYTES + 2)
            if not chunk:
                return
            number += 1
            if number == 1 and chunk.startswith(_BOM):
                chunk = chunk[len(_BOM):]
            if chunk.endswith(b"\n"):
                chunk = chunk[:-1]
                if chunk.endswith(b"\r"):
                    chunk = chunk[:-1]
            elif len(chunk) > MAX_LINE_BYTES:
                size = len(chunk)
                while chunk and not chunk.endswith(b"\n"):
                    chunk = stream.readline(MAX_LINE_BYTES)
                    size += len(chunk)
                yield number, None, f"line is longer than {MAX_LINE_BYTES} bytes (at least {size})"
                continue
            yield number, chunk, None
    except (OSError, EOFError, zlib.error) as exc:
        yield number + 1, None, f"input could not be read past line {number}: {exc}"


def parse_line(number: int, raw: bytes) -> Line | InvalidLine | None:
    """Parse one line's bytes into a Line, an InvalidLine, or None for a blank line."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():
            return None
        return InvalidLine(number, None, None, (Problem("line", _json_error(raw, exc)),))
    if type(data) is not dict:
        kind = "an array" if isinstance(data, list) else type(data).__name__
        return InvalidLine(number, None, None,
                           (Problem("line", f"must be a JSON object, got {kind}"),))
    return _envelope(number, data)


def _json_error(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 at byte {bad.start + 1}"
    return f"not valid JSON: {exc}"


def _envelope(number: int, data: dict[str, Any]) -> Line | InvalidLine:
    problems: list[Problem] = []
    task_id = data.get("task_id")
    ref = data.get("ref")
    body = data.get("body")
    if type(task_id) is not str:
        problems.append(Problem("task_id", "required: a string of 1 to 36 characters"
                                if task_id is None else "must be a string"))
        task_id = None
    elif not 1 <= len(task_id) <= 36:
        problems.append(Problem("task_id", f"must be 1 to 36 characters, got {len(task_id)}"))
    if ref is not None and type(ref) is not str:
        problems.append(Problem("ref", "must be a string"))
        ref = None
    elif ref is not None and len(ref) > 256:
        problems.append(Problem("ref", f"must be at most 256 characters, got {len(ref)}"))
    if body is not None and type(body) is not dict:
        problems.append(Problem("body", "must be an object (PutTaskReq)"))
    if len(data) > 3 or not _ENVELOPE_KEYS.issuperset(data):
        for key in data:
            if key not in _ENVELOPE_KEYS:
                problems.append(Problem(key, f"unknown key {key!r}: a line holds only task_id, "
                                        "body and ref"))
    if problems:
        return InvalidLine(number, task_id, ref, tuple(problems))
    assert task_id is not None
    return Line(number, task_id, ref, body)


def read_lines(stream: IO[bytes]) -> Iterator[Line | InvalidLine]:
    """Every non-blank line of the stream, in order, parsed."""
    for number, raw, error in iter_raw_lines(stream):
        if raw is None:
            yield InvalidLine(number, None, None, (Problem("line", error or "unreadable"),))
            continue
        parsed = parse_line(number, raw)
        if parsed is not None:
            yield parsed
