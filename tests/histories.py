"""Histories of runs against the simulator, for the model test of issue 18 (`test_model.py`).

A *history* is one input file, one `--out`, one simulator with a few tasks of known values, and
a sequence of steps: runs with random flags and faults, killed or not, and outside writes. This
module holds what such a history is made of and how a step is carried out, in this process:

- `Line`, `Flags`, `Faults`, `Outside`: the pieces, frozen, each with a short readable `str`
  (a shrunk counterexample prints as a plain scenario);
- `fold`: the pure model of invariant (a), a task's fields after its lines in file order;
- `KillSwitch`: SIGKILL simulated in-process. The product writes its journal (`--out`) and the
  undo side log (`.NAME.previous`) with `os.write` in the modules that define `OutcomeWriter`
  and `PreviousLog` (the classes `batchsms.commands.run` imports); the switch replaces `os` in
  those modules with a proxy that counts the writes to those two files. At the k-th one,
  nothing more reaches either file (this write and every later one, `close`/`flush` included,
  raise `Killed`, a BaseException which nothing in the product catches, so that no coroutine
  goes past a write that did not happen: a capture "written" after the kill lets no PUT out)
  and the run unwinds. Requests already sent may still land in the simulator, as after a kill;
- `Bench`: one history's directory and simulator, and the commands run in-process
  (`batchsms.cli.main`, as `tests.processes.InProcess` does: no interpreter start-up; its
  argument parser built once), with fast retries (the backoff is 0: a retry is a retry
  whatever it waits).

Values are chosen so that a glance tells who wrote a field: lines and initial values use
speed limits 100-400 and names a/b/c; outside writes ("someone else") use 900-999 and
`theirs-N`, which no line ever sets.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

import batchsms.commands.run as run_command
from batchsms import cli
from batchsms.engine import retry
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.fleet import Fleet
from batchsms.simulator.threaded import SimThread, simulator_thread

FIELDS = ("speed_limit", "name")
DONE_SKIPS = frozenset({"already_succeeded", "unchanged"})
LATE_TIMEOUT_S = 0.25  # --timeout of a run with late answers; they come LATE_MS later
LATE_MS = 400.0


class Killed(BaseException):
    """The simulated SIGKILL: nothing catches it, as nothing catches a real one."""


def contains_killed(exc: BaseException) -> bool:
    if isinstance(exc, Killed):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(contains_killed(inner) for inner in exc.exceptions)
    return False


def is_outside(field: str, value: Any) -> bool:
    """True for a value only an outside write sets."""
    if field == "speed_limit":
        return isinstance(value, int) and value >= 900
    return isinstance(value, str) and value.startswith("theirs-")


# -- the pieces of a history ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One input line: a valid update of `task` with `body`, or an invalid line (`bad` says
    how, `body` unused)."""

    task: str
    body: Mapping[str, Any]
    bad: str | None = None  # "unknown-field", "out-of-range", "not-json"

    def text(self) -> str:
        if self.bad == "not-json":
            return '{"task_id": "' + self.task + '", "body": {'
        if self.bad == "unknown-field":
            return orjson.dumps({"task_id": self.task, "body": {"speedlimit": 100}}).decode()
        if self.bad == "out-of-range":
            return orjson.dumps({"task_id": self.task, "body": {"speed_limit": 5000}}).decode()
        return orjson.dumps({"task_id": self.task, "body": dict(self.body)}).decode()

    def __str__(self) -> str:
        if self.bad is not None:
            return f"{self.task} INVALID ({self.bad})"
        return f"{self.task} " + ", ".join(f"{k}={v}" for k, v in self.body.items())


@dataclass(frozen=True, slots=True)
class Flags:
    """The options of one run besides input, --out, --endpoint, --rate 0."""

    resume: bool = False
    skip_unchanged: bool = False
    verify: bool = False
    undo: bool = True
    max_attempts: int = 3
    concurrency: int = 1

    def __str__(self) -> str:
        parts = ["--resume" * self.resume, "--skip-unchanged" * self.skip_unchanged,
                 "--verify" * self.verify, "--undo-file U" * self.undo,
                 f"--max-attempts {self.max_attempts}", f"--concurrency {self.concurrency}"]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Faults:
    """The simulator's faults during one run (shares of requests)."""

    seed: int = 0
    fail: float = 0.0  # 5xx
    throttle: float = 0.0  # 429
    reset: float = 0.0  # connection dropped before anything is applied
    lose: float = 0.0  # update applied, then the connection dropped
    late: float = 0.0  # update applied, the answer held past the client's --timeout

    @property
    def any(self) -> bool:
        return bool(self.fail or self.throttle or self.reset or self.lose or self.late)

    def config(self) -> FaultConfig:
        return FaultConfig(seed=self.seed, fail_rate=self.fail, throttle_random=self.throttle,
                           reset_rate=self.reset, lose_rate=self.lose, late_rate=self.late,
                           late_ms=LATE_MS)

    def __str__(self) -> str:
        shown = [f"{name} {getattr(self, name):g}"
                 for name in ("fail", "throttle", "reset", "lose", "late") if getattr(self, name)]
        return f"faults ({', '.join(shown)}; seed {self.seed})" if shown else "no faults"


@dataclass(frozen=True, slots=True)
class Outside:
    """Someone else writes `value` into `field` of `task`, between two runs."""

    task: str
    field: str
    value: Any

    def __str__(self) -> str:
        return f"outside write: {self.task} {self.field}={self.value}"


def fold(start: Mapping[str, Any], bodies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The model of invariant (a): `start` with `bodies` applied in order (flat bodies)."""
    state = dict(start)
    for body in bodies:
        state.update(body)
    return state


# -- the simulated kill -----------------------------------------------------------------------


class _KillableOs(types.ModuleType):
    """`os`, but `write` to a watched file counts, and from the k-th one on does nothing."""

    def __init__(self, switch: KillSwitch) -> None:
        super().__init__("os")
        self._switch = switch

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        return self._switch.write(fd, data)


class KillSwitch:
    """Kills a run (`Killed`) at the `after`-th write to its journal or side log; None: never.

    `writes` counts the writes seen, `fired` says whether the kill happened."""

    def __init__(self, out: Path, after: int | None) -> None:
        real = Path(os.path.realpath(out))
        self._watched = {str(real), str(real.with_name(f".{real.name}.previous"))}
        self._after = after
        self.writes = 0
        self.fired = False

    def _is_watched(self, fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}") in self._watched
        except OSError:
            return False

    def write(self, fd: int, data: Any) -> int:
        if not self._is_watched(fd):
            return os.write(fd, data)
        if self.fired:
            # The process is dead: nothing reaches the file, and the coroutine that tried goes
            # no further (a capture written "after death" must not let its PUT out: a killed
            # process sends nothing new; only what was already in flight may land).
            raise Killed(f"killed before write {self.writes + 1}")
        self.writes += 1
        if self._after is not None and self.writes >= self._after:
            self.fired = True
            raise Killed(f"killed at write {self.writes}")
        return os.write(fd, data)

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """`os` replaced in the modules that write the journal and the side log."""
        names = {"batchsms.journal.outcomes", "batchsms.changes.undo_log"}
        for cls in ("OutcomeWriter", "PreviousLog"):
            found = getattr(run_command, cls, None)
            if found is not None:
                names.add(found.__module__)
        proxy = _KillableOs(self)
        patched = []
        for name in sorted(names):
            module = sys.modules.get(name)
            if module is not None and getattr(module, "os", None) is os:
                patched.append(module)
                module.os = proxy  # type: ignore[attr-defined]
        try:
            yield
        finally:
            for module in patched:
                module.os = os  # type: ignore[attr-defined]


# -- one history's bench ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did, as the harness saw it."""

    code: int | None  # None: killed
    records: list[dict[str, Any]]  # the records this run appended to the journal
    kill_writes: int  # writes to the journal and side log counted before the kill (or in all)

    @property
    def killed(self) -> bool:
        return self.code is None


def _no_backoff(attempt: int, **_: Any) -> float:
    return 0.0


_PARSER: list[Any] = []


def _one_parser() -> Any:
    """`cli.build_parser`, built once: building it is a third of a short run's CPU."""
    if not _PARSER:
        _PARSER.append(_build_parser())
    return _PARSER[0]


_build_parser = cli.build_parser


class Bench:
    """A directory, a simulator with `tasks` at known values, and commands run in-process."""

    def __init__(self, initial: Mapping[str, Mapping[str, Any]]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="batchsms-model-"))
        fleet = self.dir / "fleet.jsonl"
        fleet.write_bytes(b"".join(orjson.dumps({"id": task, **fields}) + b"\n"
                                   for task, fields in initial.items()))
        self.tasks = list(initial)
        self.fleet = Fleet.from_jsonl(fleet)
        self._stack = contextlib.ExitStack()
        self.sim: SimThread = self._stack.enter_context(simulator_thread(fleet=self.fleet))
        self.out = self.dir / "out.jsonl"
        self.input = self.dir / "in.jsonl"

    def close(self) -> None:
        self._stack.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # the simulator
    def state(self) -> dict[str, dict[str, Any]]:
        def read() -> dict[str, dict[str, Any]]:
            views = {task: self.fleet.show(task) or {} for task in self.tasks}
            return {task: {f: view.get(f) for f in FIELDS} for task, view in views.items()}
        return self.sim.call(read)

    def write(self, task: str, fields: Mapping[str, Any]) -> None:
        """A write by someone else (or a reset of the harness), straight into the store."""
        self.sim.call(lambda: self.fleet.apply(task, dict(fields)))

    def faults(self, faults: Faults) -> None:
        config = faults.config()
        handle = self.sim.handle
        self.sim.call(lambda: handle.faults.reconfigure(config))

    def settle(self) -> None:
        """Let requests a killed run left in flight reach the store (or die) before going on."""
        time.sleep(0.02)
        self.sim.call(lambda: None)

    # the commands
    def command(self, *args: str | Path) -> int:
        """`batchsms ARGS` in this process; its exit code. Output goes to the test's capture."""
        saved_log = structlog.get_config()
        saved_files = resource.getrlimit(resource.RLIMIT_NOFILE)
        saved_backoff = retry.backoff_delay
        retry.backoff_delay = _no_backoff
        cli.build_parser = _one_parser
        try:
            try:
                code: Any = cli.main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        finally:
            retry.backoff_delay = saved_backoff
            cli.build_parser = _build_parser
            structlog.configure(**saved_log)
            resource.setrlimit(resource.RLIMIT_NOFILE, saved_files)

    def run(self, source: Path, out: Path, *extra: str | Path, kill: int | None = None,
            timeout: float = 10.0) -> RunResult:
        """`batchsms run SOURCE --out OUT EXTRA` against the simulator, maybe killed."""
        start = out.stat().st_size if out.exists() else 0
        switch = KillSwitch(out, kill)
        code: int | None
        try:
            with switch.armed():
                code = self.command("run", source, "--out", out, "--endpoint", self.sim.handle.url,
                                    "--rate", "0", "--timeout", f"{timeout:g}", "--quiet",
                                    "--log-format", "json", "--no-progress", *extra)
        except BaseException as exc:
            if not contains_killed(exc):
                raise
            code = None
        if switch.fired:
            code = None
            self.settle()
        return RunResult(code, read_records(out, start), switch.writes)


def read_records(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """The whole records of a journal from byte `start` on (a cut or garbled line is skipped)."""
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(start)
        data = handle.read()
    records = []
    for chunk in data.splitlines():
        try:
            record = orjson.loads(chunk)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def latest_by_line(records: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    latest: dict[int, Mapping[str, Any]] = {}
    for record in records:
        line = record.get("line")
        if type(line) is int:
            latest[line] = record
    return latest


def is_done(record: Mapping[str, Any] | None) -> bool:
    """`succeeded`, or `skipped` as already done (`already_succeeded`, `unchanged`)."""
    if record is None:
        return False
    status = record.get("status")
    return status == "succeeded" or (status == "skipped"
                                     and record.get("error_code") in DONE_SKIPS)


def verdict(record: Mapping[str, Any] | None) -> str:
    """A record in a few words: `succeeded`, `skipped/unchanged`, `failed/5xx`..."""
    if record is None:
        return "no record"
    code = record.get("error_code")
    return f"{record.get('status')}/{code}" if code else str(record.get("status"))


def read_undo(path: Path) -> list[dict[str, Any]]:
    return read_records(path)


def temp_copy(path: Path, name: str) -> Path:
    target = path.with_name(name)
    shutil.copyfile(path, target)
    return target
