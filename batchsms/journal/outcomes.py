"""Outcome records: one per non-blank input line, the journal of a run.

The `Outcome` record (docs/reference.md §3), the append-only `OutcomeWriter` (whole lines, flushed
at least once a second and at exit, starting on a fresh line if a crash cut the last one), the
exclusive lock on `--out` (on the file, whatever its name) and the files kept beside it, and
the journal read back (`iter_journal`, which `--resume` and `report` build their indexes from).

Size (~430 lines): one job, the journal file, written, locked and read back; the writer's crash
and disk-full handling is most of it, the lock (by file identity, naming its holder) the next.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import functools
import hashlib
import os
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import orjson

from batchsms.errors import JournalError, LockedError, UsageError
from batchsms.lines.schema import Problem
from batchsms.transport import untrusted

MAX_BUFFERED = 512  # records held before a write, whatever the time


DONE_SKIP_CODES = frozenset({"already_succeeded", "unchanged"})
"""`error_code`s of `skipped` lines that count as done (exit 0, `report`): succeeded in an
earlier run (`--resume`), or already as wanted (`--skip-unchanged`)."""


class Status(enum.StrEnum):
    """A line's status after a run (docs/reference.md §3)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INVALID = "invalid"
    SKIPPED = "skipped"


class CheckStatus(enum.StrEnum):
    """`validate --out`'s status of a line that passed; one that did not is `Status.INVALID`."""

    VALID = "valid"


class Outcome(NamedTuple):
    """One line's result, serialised in this field order. (A `NamedTuple`, as STYLE allows on
    hot paths: one is made per line, and a frozen dataclass of 17 fields costs four times as
    much to make -- a twentieth of what `run` spends on a request. Change one with `_replace`.)"""

    run_id: str
    line: int
    task_id: str | None
    ref: str | None
    status: Status | CheckStatus
    http_status: int | None = None
    attempts: int = 0
    error_code: str | None = None
    error_msg: str | None = None
    errors: tuple[Problem, ...] = ()
    request_id: str | None = None
    body_sha256: str | None = None
    elapsed_ms: int | None = None
    finished_at: str = ""
    # The line did not succeed, but a request of it left without a readable answer (timeout,
    # connection dropped after sending, an answer that could not be parsed): the service may
    # have applied it. False when no request of the line can have been applied.
    maybe_applied: bool = False
    # With undo capture (`--undo-file`): the task's values, read just before the write, of the
    # readable fields the line sets (diff.previous); serialised only when set.
    previous: Mapping[str, Any] | None = None
    # The line's operation (docs/reference.md §1, §11): `update` or `speed-limit`; None only
    # for a line too broken to say (its `op` unreadable).
    op: str | None = None
    # Reads of the line (ShowTask before the write, or after it with --verify), apart from
    # `attempts`, its writes; serialised only when there were some (docs/reference.md §3).
    reads: int = 0

    def to_json(self) -> bytes:
        """The record as one JSON line. Never raises: one record must not stop a run.

        The client already made every string from the network safe; should anything still
        not encode (text that is not valid Unicode, from wherever), the record is written
        with that text replaced (U+FFFD, escaped controls), and a failed line's `error_msg`
        says which fields were.
        """
        data = self.to_dict()
        try:
            return orjson.dumps(data) + b"\n"
        except (orjson.JSONEncodeError, TypeError):
            return _scrubbed_json(data)

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict: the JSON object `to_json` writes (docs/reference.md §3)."""
        data = {
            "run_id": self.run_id, "line": self.line, "task_id": self.task_id, "op": self.op,
            "ref": self.ref,
            "status": self.status.value, "http_status": self.http_status,
            "attempts": self.attempts, "error_code": self.error_code,
            "error_msg": self.error_msg, "errors": [p.as_dict() for p in self.errors],
            "request_id": self.request_id, "body_sha256": self.body_sha256,
            "elapsed_ms": self.elapsed_ms, "finished_at": self.finished_at or utc_now(),
            "maybe_applied": self.maybe_applied,
        }
        if self.reads:
            data["reads"] = self.reads
        if self.previous is not None:
            data["previous"] = self.previous
        return data


def _scrubbed_json(data: dict[str, Any]) -> bytes:
    """The last resort of `Outcome.to_json`: every value made encodable, and the failed
    line's `error_msg` naming the fields that had to be."""
    clean = {key: untrusted.scrub(value) for key, value in data.items()}
    changed = [key for key, value in data.items() if not _encodes(value)]
    if clean.get("status") not in (Status.SUCCEEDED.value, CheckStatus.VALID.value):
        note = f"[batchsms replaced text that could not be written in: {', '.join(changed)}]"
        msg = clean.get("error_msg")
        clean["error_msg"] = f"{msg} {note}" if isinstance(msg, str) else note
    try:
        return orjson.dumps(clean) + b"\n"
    except (orjson.JSONEncodeError, TypeError):  # cannot happen after scrub; still never raise
        return orjson.dumps({"run_id": str(data.get("run_id")), "line": data.get("line"),
                             "status": str(data.get("status")),
                             "error_msg": "[batchsms could not write this record]"}) + b"\n"


def _encodes(value: object) -> bool:
    try:
        orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return False
    return True


def utc_now() -> str:
    """UTC, RFC 3339 with milliseconds and a Z."""
    now = time.time()
    second = int(now)
    return f"{_utc_second(second)}.{int((now - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    # One strftime per second instead of one per record (it is on the hot path).
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + os.urandom(4).hex()


class OutcomeWriter:
    """Appends whole records; `maybe_flush` flushes once a second, `close` at the end.

    Records of lines that were sent are written through at once (`durable=True`), so that a
    SIGKILL loses at most the answers still in flight and `--resume` never re-sends a journaled
    success; records without side effects (invalid, skipped) are batched.

    A write that fails (disk full, I/O error, file size limit) raises `JournalError` naming the
    file and the cause, after cutting the file back to its last whole record: the journal never
    ends in half a record of ours. From then on the writer is broken: every later write raises
    the same error at once and `close` only releases the file.
    """

    def __init__(self, path: Path, *, flush_interval: float = 1.0) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open outcomes file {str(path)!r}: {exc.strerror}") from exc
        self._buffer: list[bytes] = []
        self._interval = flush_interval
        self._last_flush = time.monotonic()
        self._broken: JournalError | None = None
        if ends_cut(path):
            self._buffer.append(b"\n")  # a crash cut the last record: start on a fresh line

    def write(self, outcome: Outcome, *, durable: bool = False) -> None:
        """Queue a record; `durable` writes it through at once (a request was sent for it)."""
        if self._broken is not None:
            raise self._broken
        self._buffer.append(outcome.to_json())
        if durable:
            self.flush()
        else:
            self.maybe_flush()

    def maybe_flush(self) -> None:
        # By time (at least once a second) or by size (a fast producer, such as `validate`,
        # must not pile a second's worth of records up in memory).
        if len(self._buffer) >= MAX_BUFFERED or \
                time.monotonic() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._buffer:
            records = self._buffer
            self._buffer = []
            data = b"".join(records)
            done = 0
            try:
                done = os.write(self._fd, data)  # whole at once, but for a signal or a full disk
                if done < len(data):
                    view = memoryview(data)
                    while done < len(data):
                        done += os.write(self._fd, view[done:])
            except OSError as exc:
                self._fail(exc, records, done)
        self._last_flush = time.monotonic()

    def _fail(self, exc: OSError, records: list[bytes], done: int) -> NoReturn:
        """Keep the records that reached the file whole, cut the rest off, and break.

        Where this flush started is asked for here, not before every write: the file is
        append-only and the lock (`lock_outcomes`) keeps other writers out, so it started
        `done` bytes before the end."""
        start: int | None = None
        with contextlib.suppress(OSError):
            start = os.fstat(self._fd).st_size - done
        if start is not None:
            whole = 0
            for record in records:
                if whole + len(record) > done:
                    break
                whole += len(record)
            # if even this fails, the cut record stays: readers skip and count it (§10)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start + whole)
        self._broken = JournalError(f"cannot write outcomes file {str(self.path)!r}: "
                                    f"{exc.strerror or exc}")
        raise self._broken from exc

    def close(self) -> None:
        try:
            if self._broken is None:
                self.flush()
        finally:
            os.close(self._fd)


def ends_cut(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def beside(out: Path, suffix: str) -> Path:
    """The file `.NAME.<suffix>` kept beside the journal `out` (the pid of its run: `lock`; the
    undo side log: `previous`), next to the file `out` resolves to (`os.path.realpath`): a
    symlink, a symlinked directory, `..` or an absolute path all find the same one."""
    real = Path(os.path.realpath(out))
    return real.with_name(f".{real.name}.{suffix}")


def journal_files(out: Path | None) -> list[tuple[str, Path | None]]:
    """`--out` and the files kept beside it, as (what, path) inputs for
    `outputs.check_output`: no other output may be one of them."""
    if out is None:
        return []
    return [("--out", out), ("the undo side log of --out", beside(out, "previous")),
            ("the lock of --out", beside(out, "lock"))]


class JournalLock:
    """An exclusive `flock` on the journal file itself, held until `close` or the process ends
    (even by SIGKILL). Made by `lock_outcomes`."""

    def __init__(self, fd: int, path: Path, *, created: bool) -> None:
        self._fd = fd
        self.path = path
        self._created = created

    def close(self, *, unused: bool = False) -> None:
        """Release the lock. `unused`: the run refused before writing (exit 2); a journal this
        lock created is then removed, still locked, so that a refusal leaves no `--out`."""
        try:
            real = Path(os.path.realpath(self.path))  # the file, not a symlink to it
            if unused and self._created and os.fstat(self._fd).st_size == 0 \
                    and _same_file(self._fd, real):
                with contextlib.suppress(OSError):
                    real.unlink()
        finally:
            os.close(self._fd)


def lock_outcomes(path: Path) -> JournalLock:
    """Lock the journal `path` for this process: an exclusive `flock` on the file, created if
    need be. The lock is on the file, not the name (docs/reference.md §7): a symlink, a hard link, a
    symlinked directory or `..` meet the same lock. `LockedError` names the holder's pid.

    The holder's pid is kept in `beside(path, "lock")` (with the file's identity, so that a
    stale one is not believed); through another name (a hard link) it is looked up in
    /proc/locks. A stream or a device (`/dev/null`, a pipe) is no journal to share or resume:
    it is not locked.
    """
    while True:
        created = not os.path.exists(path)
        fd, info = _open_journal(path)
        if not stat.S_ISREG(info.st_mode):
            return JournalLock(fd, path, created=False)
        try:
            _flock(fd, path, info)
            if _same_file(fd, path):
                break
            # a run that had created it refused and removed it, or it was replaced, after we
            # opened it: lock what the name is now
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    _write_holder(path, info)
    return JournalLock(fd, path, created=created)


def _open_journal(path: Path) -> tuple[int, os.stat_result]:
    """The journal opened for appending (created if need be), and what it is."""
    try:  # as the writer opens it (a FIFO waits for its reader here, as it did there)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot open outcomes file {str(path)!r}: {exc.strerror}") from exc
    return fd, os.fstat(fd)


def _flock(fd: int, path: Path, info: os.stat_result) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockedError(f"{str(path)!r} is in use by another batchsms run "
                          f"(pid {_holder(path, info)}); wait for it to finish or use "
                          "another --out") from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _write_holder(path: Path, info: os.stat_result) -> None:
    # best effort: the refusal falls back to /proc/locks, then to "unknown"
    with contextlib.suppress(OSError), beside(path, "lock").open("w") as handle:
        handle.write(f"{os.getpid()} {info.st_dev} {info.st_ino}\n")


def _holder(path: Path, info: os.stat_result) -> str:
    """The pid holding the lock on the journal `info` describes, or "unknown"."""
    try:
        pid, dev, ino = beside(path, "lock").read_text().split()
        if (int(dev), int(ino)) == (info.st_dev, info.st_ino):
            return pid
    except (OSError, ValueError):
        pass
    # Linux: "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF" (device in hex)
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with Path("/proc/locks").open() as locks:
            for line in locks:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return fields[4]
    except OSError:
        pass
    return "unknown"


@dataclass
class JournalScan:
    """What reading an existing outcomes file found."""

    records: int = 0
    cut_lines: int = 0


def iter_journal(path: Path, scan: JournalScan | None = None,
                 start: int = 0) -> Iterator[dict[str, Any]]:
    """Every whole record of an outcomes file from byte `start` on; cut or garbled lines are
    counted, not returned."""
    scan = scan if scan is not None else JournalScan()
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot read outcomes {str(path)!r}: {exc.strerror}") from exc
    with handle:
        if start:
            handle.seek(start)
        for chunk in handle:  # records have no size bound (every problem of a line is listed)
            if not chunk.strip():
                continue
            try:
                record = orjson.loads(chunk)
            except orjson.JSONDecodeError:
                scan.cut_lines += 1
                continue
            if not isinstance(record, dict) or "status" not in record:
                scan.cut_lines += 1
                continue
            scan.records += 1
            yield record


def resume_key(task_id: str, body_sha256: str, op: str | None = None) -> bytes:
    """16 bytes per (task, op, body): how `report` (and the undo of a `--resume` run) key a
    line (`op` None or `update`: the same key as a record written before `op` existed).
    `--resume` itself identifies a line by its number too (batchsms/resume.py)."""
    tail = "" if op is None or op == "update" else f"\0{op}"
    return hashlib.blake2b(f"{task_id}\0{body_sha256}{tail}".encode(), digest_size=16).digest()

