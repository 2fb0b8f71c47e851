"""Reading the input: JSONL bytes -> `Line` or `InvalidLine` values, one per non-blank line.

Streaming and bounded: a file is read line by line with a length cap, so neither a million lines
nor one 10 MB line is ever held in memory whole. `-` is standard input; gzip is recognised by
its magic bytes (so `*.gz` and a piped `gzip -c` both work). A UTF-8 BOM at the start is ignored.
Every problem of a line becomes an `InvalidLine` with a message and its path; nothing raises past
this module except `UsageError` for an input that cannot be opened at all.

A line may name its operation (docs/reference.md §1, §11): ``"op": "update"`` (UpdateTask) or
``"speed-limit"`` (UpdateSpeed); `Line.op` is None when it names none (the run's default applies).
Any other value is a problem at path ``op``.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

import orjson

from batchsms.errors import UsageError
from batchsms.lines.schema import Problem, describe

MAX_LINE_BYTES = 1024 * 1024  # docs/reference.md §1: the default of every reader's `max_line`
MAX_TASK_ID = 36  # Table 1
MAX_REF = 256
_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
_new_tuple = tuple.__new__
_ENVELOPE_KEYS = frozenset({"task_id", "body", "ref", "expect", "op"})
UPDATE = "update"  # UpdateTask: PUT /v3/tasks/{task_id}, body PutTaskReq
SPEED_LIMIT = "speed-limit"  # UpdateSpeed: POST /v3/tasks/{task_id}/speed-limit, §11
OPS = (UPDATE, SPEED_LIMIT)
# Percent-encoding leaves them as they are, and a normalising gateway resolves `/v3/tasks/..`
# to another resource: never a task id.
_DOT_SEGMENTS = frozenset({".", ".."})


class Line(NamedTuple):
    """A line whose envelope is sound; `body` is None when the line carries none, `expect`
    (the values the task must have before the write, docs/reference.md §1) when it carries none,
    `op` (one of `OPS`) when it names none.

    A NamedTuple rather than a dataclass: one is built per input line, on the hot path.
    `Line(...)` builds one too; the reader uses `tuple.__new__` (see `parse_line`), which
    takes no defaults: every field is given there.
    """

    number: int
    task_id: str
    ref: str | None
    body: dict[str, Any] | None
    expect: dict[str, Any] | None = None
    op: str | None = None


class InvalidLine(NamedTuple):
    """A line that will not be sent, with every problem found in it."""

    number: int
    task_id: str | None
    ref: str | None
    errors: tuple[Problem, ...]
    op: str | None = None  # the line's operation when known (the planner's), for its outcome


def open_input(source: str) -> IO[bytes]:
    """Open a path or `-` as a binary stream, decompressing gzip transparently.

    Only a regular file is looked into here. Anything else (standard input, a FIFO,
    `<(...)`) may not have written a byte yet: its first bytes are looked at on the first read,
    which the run does in a reader thread, after its signal handlers are installed.
    """
    if source == "-":
        raw: IO[bytes] = _own_stdin()
    else:
        try:
            raw = Path(source).open("rb")  # noqa: SIM115 - closed by the caller's iterator
        except OSError as exc:
            raise UsageError(f"cannot read input {source!r}: {exc.strerror or exc}") from exc
    if not _is_regular(raw):
        return cast(IO[bytes], _SniffOnFirstRead(raw, source))
    return _decompressed(raw, source)


def is_regular_input(stream: IO[bytes]) -> bool:
    """Whether `stream`, as `open_input` returned it, reads a regular file (it ends, and reading
    it cannot block): what `open_input` found in one `fstat` of the descriptor it opened, the
    one place a command works that out."""
    return not isinstance(stream, _SniffOnFirstRead)


def _own_stdin() -> IO[bytes]:
    """Standard input through a reader of our own (a duplicate descriptor): a reader thread
    blocked in it at exit must not hold `sys.stdin`'s lock, which the interpreter takes while
    shutting down (it would abort: "could not acquire lock ... at interpreter shutdown")."""
    try:
        return open(os.dup(sys.stdin.fileno()), "rb")  # closed with the input
    except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor (a test's stdin)
        return sys.stdin.buffer


def _is_regular(raw: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(raw.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor (a test's BytesIO)
        return False


def _decompressed(raw: IO[bytes], source: str) -> IO[bytes]:
    peek = getattr(raw, "peek", None)
    head = peek(2)[:2] if peek is not None else b""
    if head == GZIP_MAGIC or (not head and source.endswith(".gz")):
        if source == "-":
            return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        return cast(IO[bytes], _ClosingGzipFile(raw))
    return raw


class _SniffOnFirstRead:
    """A stream that decides plain or gzip on its first read (which may block)."""

    def __init__(self, raw: IO[bytes], source: str) -> None:
        self._raw = raw
        self._source = source
        self._stream: IO[bytes] | None = None

    def readline(self, limit: int = -1) -> bytes:
        if self._stream is None:
            self._stream = _decompressed(self._raw, self._source)
        return self._stream.readline(limit)

    def close(self) -> None:
        (self._stream or self._raw).close()


class _ClosingGzipFile(gzip.GzipFile):
    """A GzipFile that closes the file it reads: `GzipFile(fileobj=...)` leaves it open."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def iter_raw_lines(stream: IO[bytes], max_line: int = MAX_LINE_BYTES,
                   ) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yield (line number, the line's bytes, or None with a read error) for every line.

    Numbers are 1-based and count blank lines. The bytes keep their line ending (LF or CRLF),
    which JSON reads as whitespace: cutting it off would copy every line for nothing. The
    limit (`max_line` bytes, 1 MiB) counts the line without its ending. Lines over the limit are
    consumed in chunks and reported, never buffered whole. A corrupt or truncated gzip stream
    ends the input with one error line.
    """
    readline = stream.readline
    limit = max_line + 2  # room for the longest allowed line and its "\r\n"
    number = 0
    try:
        while chunk := readline(limit):
            number += 1
            if number == 1 and chunk.startswith(_BOM):
                # Read the BOM's bytes more, so the limit applies to the line after it.
                if chunk[-1:] != b"\n" and len(chunk) == limit:
                    chunk += readline(len(_BOM))
                chunk = chunk[len(_BOM):]
            if len(chunk) <= max_line:  # within the limit whatever its ending: most lines
                yield number, chunk, None
                continue
            if chunk[-1:] == b"\n":
                size = len(chunk) - (2 if chunk[-2:] == b"\r\n" else 1)
                if size <= max_line:
                    yield number, chunk, None
                    continue
            else:  # no newline within the limit: drain the rest of the line, chunk by chunk
                size, tail = len(chunk), chunk[-2:]
                while tail[-1:] != b"\n" and (chunk := readline(limit)):
                    size, tail = size + len(chunk), (tail + chunk)[-2:]
                if tail[-1:] == b"\n":  # the newline is not part of the line
                    size -= 2 if tail == b"\r\n" else 1
            yield number, None, _too_long(size, max_line)
    except (OSError, EOFError, zlib.error) as exc:
        yield number + 1, None, f"{_UNREADABLE} {number}: {_read_error(exc)}"


_UNREADABLE = "input could not be read past line"


def _read_error(exc: BaseException) -> str:
    """Why reading stopped: a gzip stream that is corrupt or cut short is said to be one (its
    library's words alone, "invalid bit length repeat", read like a mistake in the lines)."""
    if isinstance(exc, EOFError):
        return f"the gzip stream is cut short ({exc})"
    if isinstance(exc, (zlib.error, gzip.BadGzipFile)):
        return f"the gzip stream is corrupt ({exc})"
    return str(exc)


def read_failure(item: InvalidLine) -> str | None:
    """Why the input could not be read further, when `item` is the line that says so (a
    corrupt gzip stream, an I/O error), else None: that is no mistake in the lines."""
    if item.task_id is None and len(item.errors) == 1:
        message = item.errors[0].message
        if message.startswith(_UNREADABLE):
            return message.partition(": ")[2]
    return None


def _too_long(size: int, max_line: int) -> str:
    return f"line is {size} bytes, longer than the limit of {max_line} bytes"


def parse_line(number: int, raw: bytes) -> Line | InvalidLine | None:
    """Parse one line's bytes into a Line, an InvalidLine, or None for a blank line."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():
            return None
        return InvalidLine(number, None, None, (Problem("line", _json_error(raw, exc)),))
    if type(data) is not dict:
        return InvalidLine(number, None, None,
                           (Problem("line", f"must be a JSON object, got {describe(data)}"),))
    task_id = data.get("task_id")
    ref = data.get("ref")
    body = data.get("body")
    # The common case in one test, the key count sparing the set test when no key is null or
    # extra; _envelope_problems() says what is wrong otherwise. A null `expect`, like a null
    # `ref` or `body`, is an absent one; a line with one pays for the look (it costs a read).
    if (type(task_id) is str and 1 <= len(task_id) <= MAX_TASK_ID
            and task_id not in _DOT_SEGMENTS
            and (ref is None or (type(ref) is str and len(ref) <= MAX_REF))
            and (body is None or type(body) is dict)):
        # Built without the NamedTuple's Python-level __new__ (as its own _make does): 318 ns
        # instead of 682 ns, on a per-line path of ~2.5 µs for small lines (bench_validate);
        # with Planned's, a fifth of it.
        if len(data) == 1 + (ref is not None) + (body is not None):
            return _new_tuple(Line, (number, task_id, ref, body, None, None))
        expect = data.get("expect")
        op = data.get("op")
        if ((expect is None or type(expect) is dict)
                and (op is None or (type(op) is str and op in OPS))
                and _ENVELOPE_KEYS.issuperset(data)):
            return _new_tuple(Line, (number, task_id, ref, body, expect, op))
    named = data.get("op")
    return InvalidLine(number, task_id if type(task_id) is str else None,
                       ref if type(ref) is str else None, tuple(_envelope_problems(data)),
                       named if type(named) is str and named in OPS else None)


def _json_error(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 at byte {bad.start + 1}"
    return f"not valid JSON {json_error_at(exc)}"


def json_error_at(exc: orjson.JSONDecodeError) -> str:
    """`at column N: what`, N counted in characters from 1 within the one line decoded.

    orjson's own text ends in "line 1 column 5 (char 4)": the decoder's line, always 1 since it
    is given one line at a time, which next to the input's line number read as a second one."""
    return f"at column {exc.colno}: {exc.msg}"


def _envelope_problems(data: dict[str, Any]) -> Iterator[Problem]:
    task_id = data.get("task_id")
    if task_id is None:
        yield Problem("task_id", f"required: a string of 1 to {MAX_TASK_ID} characters")
    elif type(task_id) is not str:
        yield Problem("task_id", f"must be a string, got {describe(task_id)}")
    elif not 1 <= len(task_id) <= MAX_TASK_ID:
        yield Problem("task_id", f"must be 1 to {MAX_TASK_ID} characters, got {len(task_id)}")
    elif task_id in _DOT_SEGMENTS:
        yield Problem("task_id", f"{task_id!r} is a path dot segment, not a task id: a gateway "
                      "would send the request to another resource")
    ref = data.get("ref")
    if ref is not None and type(ref) is not str:
        yield Problem("ref", f"must be a string, got {describe(ref)}")
    elif ref is not None and len(ref) > MAX_REF:
        yield Problem("ref", f"must be at most {MAX_REF} characters, got {len(ref)}")
    op = data.get("op")
    if op is not None and (type(op) is not str or op not in OPS):
        shown = repr(op) if type(op) is str else describe(op)
        yield Problem("op", f"must be {UPDATE!r} (UpdateTask) or {SPEED_LIMIT!r} (UpdateSpeed), "
                      f"got {shown}")
    body = data.get("body")
    if body is not None and type(body) is not dict:
        model = "SpeedLimit" if op == SPEED_LIMIT else "PutTaskReq"
        yield Problem("body", f"must be an object ({model}), got {describe(body)}")
    expect = data.get("expect")
    if expect is not None and type(expect) is not dict:
        yield Problem("expect", "must be an object (the values the task must have before the "
                      f"write, shaped like the body), got {describe(expect)}")
    for key in data:
        if key not in _ENVELOPE_KEYS:
            yield Problem(key, f"unknown key {key!r}: a line holds only task_id, op, body, "
                          "ref and expect")


def read_lines(stream: IO[bytes],
               max_line: int = MAX_LINE_BYTES) -> Iterator[Line | InvalidLine]:
    """Every non-blank line of the stream, in order, parsed; lines over `max_line` bytes are
    invalid."""
    for number, raw, error in iter_raw_lines(stream, max_line):
        if raw is None:
            yield InvalidLine(number, None, None, (Problem("line", error or "unreadable"),))
            continue
        parsed = parse_line(number, raw)
        if parsed is not None:
            yield parsed


def format_problems(item: InvalidLine) -> Iterator[str]:
    """`line N: path: message`, one per problem: how every command prints an invalid line."""
    for problem in item.errors:
        yield f"line {item.number}: {problem.path}: {problem.message}"
