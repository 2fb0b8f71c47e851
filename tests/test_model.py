"""Issue 18's invariant, checked against a model over random histories (the way Jepsen checks
histories): runs of one input on one `--out` with random flags, faults and kills, and writes by
someone else in between, against the simulator. The harness is `tests.histories`.

A history (`History`, a hypothesis `RuleBasedStateMachine`):

- set up: 3-5 tasks with known `speed_limit` and `name`; one input of 2-8 lines drawn once
  (repeated tasks, overlapping fields, some invalid lines), written to a file;
- rule `run`: `batchsms run` with random `--resume`, `--skip-unchanged`, `--verify`,
  `--undo-file` (a new file per run), `--max-attempts 1..3`, `--concurrency 1..2`; random faults
  (5xx, 429, a reset before anything is applied, an update applied then its answer dropped or
  held past `--timeout`); maybe killed at the k-th write to the journal or side log
  (`histories.KillSwitch`);
- rule `outside_write`: someone else sets a field of a task (values no line ever sets).

Checked:

(a) after each run that was not killed and whose every valid line ended done (`succeeded`, or
    `skipped` `already_succeeded`/`unchanged`): each task's fields equal the fold of its valid
    lines' bodies in file order (`histories.fold`), except the tasks an outside write touched
    since the last such run without `--resume` (a `--resume` run may rightly leave them);
(b) at the end (`teardown`): the undo file of the last such run with `--undo-file` (if the last
    run was not one, a closing `--resume --undo-file` run without faults is made first, as an
    operator would), run without faults, puts back every task at its value before the first run
    of its sequence (the runs since the last run with `--undo-file` started without `--resume`;
    checked only when every run of it captured, or left no trace); and, from the same state,
    `report OUT --undo-to U` does so for the value before the first run of the history (checked
    only when every run of the history captured);
(c) a task with a field holding someone else's value when the undo runs must end
    `skipped`/`conflict` and keep that value; a task someone else touched in the scope that we
    overwrote since is not held to (b) (either end is defensible).

A failure prints the history as a plain scenario (`History.describe`), besides hypothesis's own
steps. The default suite runs 25 derandomised histories (about 5 s when they pass); the slow
suite four shards of 500 new ones each (about 2 200 histories, 0.04 s of CPU each, about
75 s on two cores; `BATCHSMS_MODEL_EXAMPLES=N` sets the shard's budget). Every
counterexample found so far is also a plain scenario test at the end of this module
(`scenario`, `play`): items 1-5 and 7 of issue 18, and two more the model found.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

import batchsms.commands.run as run_command
from tests.histories import (
    FIELDS,
    LATE_TIMEOUT_S,
    Bench,
    Faults,
    Flags,
    Line,
    Outside,
    RunResult,
    fold,
    is_done,
    is_outside,
    latest_by_line,
    read_records,
    read_undo,
    verdict,
)

pytestmark = pytest.mark.usefixtures("loopback_only")

SPEEDS = (100, 200, 300, 400)
NAMES = ("a", "b", "c")
RATES = (0.0, 0.0, 0.15, 0.3)

valid_bodies = st.one_of(
    st.fixed_dictionaries({"speed_limit": st.sampled_from(SPEEDS)}),
    st.fixed_dictionaries({"name": st.sampled_from(NAMES)}),
    st.fixed_dictionaries({"speed_limit": st.sampled_from(SPEEDS),
                           "name": st.sampled_from(NAMES)}),
)
flags = st.builds(Flags, resume=st.booleans(), skip_unchanged=st.booleans(),
                  verify=st.booleans(), undo=st.sampled_from((True, True, True, False)),
                  max_attempts=st.integers(1, 3), concurrency=st.sampled_from((1, 1, 2)))
faults = st.one_of(
    st.just(Faults()),
    st.builds(Faults, seed=st.integers(0, 2**16), fail=st.sampled_from(RATES),
              throttle=st.sampled_from(RATES), reset=st.sampled_from(RATES),
              lose=st.sampled_from(RATES), late=st.sampled_from((0.0, 0.0, 0.0, 0.2))),
)
kills = st.one_of(st.none(), st.integers(1, 6), st.integers(1, 16))  # early kills more often

CHECK_RESUME_AFTER_KILLED_FRESH_RUN = True
"""(a) is checked after a `--resume` run that follows a run *without* `--resume` that was
killed, when an earlier run had done every line: the journal then holds the old run's `done`
records of lines the killed run never reached, beside the new ones (see the report of the
model branch: a rule of "the latest record of each line" skips them and leaves a task on an
earlier line's value). Set False only to accept that as a known limit: (a) is then not checked
after such a history until a run without `--resume` ends every line done."""

SLOW_EXAMPLES = int(os.environ.get("BATCHSMS_MODEL_EXAMPLES", "500"))
"""Histories a slow shard runs. Read at import: the autouse `_token` fixture clears every
BATCHSMS_ variable before a test runs."""


def lines_for(tasks: list[str]) -> st.SearchStrategy[list[Line]]:
    valid = st.builds(Line, task=st.sampled_from(tasks), body=valid_bodies)
    invalid = st.builds(Line, task=st.sampled_from(tasks), body=st.just({}),
                        bad=st.sampled_from(("unknown-field", "out-of-range", "not-json")))
    one = st.one_of(valid, valid, valid, invalid)
    return st.tuples(valid, st.lists(one, min_size=1, max_size=7)).map(
        lambda pair: [pair[0], *pair[1]])


class FoldError(AssertionError):
    """(a) does not hold: a task is not the fold of its lines."""


class RestoreError(AssertionError):
    """(b) does not hold: an undo did not put a task back."""


class ConflictError(AssertionError):
    """(c) does not hold: an undo overwrote someone else's value."""


class ClosingRunError(AssertionError):
    """The closing run without faults did not end every valid line done."""


@dataclass
class Scope:
    """The runs an undo file of `run --undo-file` covers: since the last run with capture that
    started without --resume."""

    base: dict[str, dict[str, Any]]  # the tasks before its first run
    clean: bool = True  # every run of it captured (or left no trace)
    touched: set[str] = field(default_factory=set)  # tasks someone else wrote since it began


@dataclass
class Step:
    """One step of the history, for the scenario printed on failure."""

    text: str
    result: RunResult | None = None


class History(RuleBasedStateMachine):
    """One history; see the module docstring."""

    checks: ClassVar[dict[str, int]] = {}  # what was checked, over all histories of a test

    def __init__(self) -> None:
        super().__init__()
        self.bench: Bench | None = None
        self.lines: list[Line] = []
        self.steps: list[Step] = []
        self.initial: dict[str, dict[str, Any]] = {}
        self.first_base: dict[str, dict[str, Any]] | None = None  # before the first run
        self.history_clean = True  # every run of the history captured (or left no trace)
        self.touched: set[str] = set()  # outside writes since the last clean run w/o --resume
        self.touched_ever: set[str] = set()  # outside writes since the first run began
        self.sequence: Scope | None = None
        self.last_undo: tuple[Path, Scope] | None = None  # undo file of the last done run
        self.runs = 0
        self.fresh_killed = False  # a run without --resume was killed since the last done one

    # -- set-up -----------------------------------------------------------------------------

    @initialize(data=st.data(), n=st.integers(3, 5))
    def setup(self, data: st.DataObject, n: int) -> None:
        tasks = [f"t{i}" for i in range(n)]
        initial = {t: {"speed_limit": data.draw(st.sampled_from(SPEEDS[:2])),
                       "name": data.draw(st.sampled_from(NAMES[:2]))} for t in tasks}
        self.start(initial, data.draw(lines_for(tasks)))

    def start(self, initial: dict[str, dict[str, Any]], lines: list[Line]) -> None:
        """The fleet and the input of this history (a scenario test calls it directly)."""
        self.initial = initial
        self.lines = lines
        self.bench = Bench(self.initial)
        self.bench.input.write_text("".join(line.text() + "\n" for line in self.lines))

    @property
    def b(self) -> Bench:
        assert self.bench is not None
        return self.bench

    def valid(self) -> list[tuple[int, Line]]:
        return [(i, line) for i, line in enumerate(self.lines, 1) if line.bad is None]

    def note(self, what: str) -> None:
        self.checks[what] = self.checks.get(what, 0) + 1

    # -- rules ------------------------------------------------------------------------------

    @rule(flags=flags, faults=faults, kill=kills)
    def run(self, flags: Flags, faults: Faults, kill: int | None) -> None:
        self.do_run(flags, faults, kill)

    @rule(data=st.data())
    def outside_write(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.b.tasks), label="task")
        name = data.draw(st.sampled_from(FIELDS), label="field")
        value = data.draw(st.integers(900, 999) if name == "speed_limit"
                          else st.integers(1, 99).map(lambda i: f"theirs-{i}"), label="value")
        self.do_outside(Outside(task, name, value))

    def do_outside(self, outside: Outside) -> None:
        task = outside.task
        self.b.write(task, {outside.field: outside.value})
        self.steps.append(Step(str(outside)))
        if self.first_base is not None:
            self.touched.add(task)
            self.touched_ever.add(task)
        if self.sequence is not None:
            self.sequence.touched.add(task)

    # -- a run and check (a) ----------------------------------------------------------------

    def do_run(self, flags: Flags, faults: Faults, kill: int | None) -> RunResult:
        bench = self.b
        self.runs += 1
        before = bench.state()
        if self.first_base is None:
            self.first_base = before
        undo = bench.dir / f"undo-{self.runs}.jsonl"
        extra: list[str | Path] = ["--max-attempts", str(flags.max_attempts),
                                   "--concurrency", str(flags.concurrency)]
        extra += ["--resume"] * flags.resume + ["--skip-unchanged"] * flags.skip_unchanged
        extra += ["--verify"] * flags.verify
        if flags.undo:
            extra += ["--undo-file", undo]
        previous_sequence = self.sequence
        previous_clean = self.history_clean
        if flags.undo and not flags.resume:
            self.sequence = Scope(base=before)
        elif self.sequence is None:
            self.sequence = Scope(base=before, clean=False)  # no start: not checked
        elif not flags.undo:
            self.sequence.clean = False
        if not flags.undo:
            self.history_clean = False
        bench.faults(faults)
        try:
            result = bench.run(bench.input, bench.out, *extra, kill=kill,
                               timeout=LATE_TIMEOUT_S if faults.late else 10.0)
        finally:
            bench.faults(Faults())
        if result.killed and flags.undo and kill == 1:
            # killed at its first write, the side log's: nothing was sent, no trace is left
            self.sequence, self.history_clean = previous_sequence, previous_clean
        latest = latest_by_line(result.records)
        statuses = {i: verdict(latest.get(i)) for i, _ in self.valid()}
        ending = "KILLED" if result.killed else f"exit {result.code}"
        self.steps.append(Step(f"run {flags}, {faults}"
                               + (f", kill at write {kill}" if kill is not None else "")
                               + f" -> {ending}; " + ", ".join(
                                   f"line {i}: {s}" for i, s in statuses.items()), result))
        all_done = not result.killed and all(is_done(latest.get(i)) for i, _ in self.valid())
        if result.killed:
            self.note("runs killed")
            self.fresh_killed |= not flags.resume
        if all_done:
            if not flags.resume:
                self.touched.clear()
                self.fresh_killed = False
            if CHECK_RESUME_AFTER_KILLED_FRESH_RUN or not self.fresh_killed:
                self.check_fold(bench.state())
            if flags.undo and self.sequence is not None and self.sequence.clean:
                self.last_undo = (undo, self.sequence)
            else:
                self.last_undo = None
        else:
            self.last_undo = None
        return result

    def check_fold(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """(a): each task is the fold of its valid lines in file order."""
        by_task: dict[str, list[Mapping[str, Any]]] = {}
        for _, line in self.valid():
            by_task.setdefault(line.task, []).append(line.body)
        for task, bodies in sorted(by_task.items()):
            if task in self.touched:
                continue
            wanted = fold({}, bodies)
            found = {f: state[task][f] for f in wanted}
            self.note("fold checks")
            self.expect(found == wanted, FoldError,
                        f"(a) {task} should be {wanted} (its lines in file order), found {found}")

    # -- the end: undo, report --undo-to, checks (b) and (c) --------------------------------

    def teardown(self) -> None:
        try:
            if self.bench is not None:
                self.finish()
        finally:
            if self.bench is not None:
                self.bench.close()

    def finish(self) -> None:
        bench = self.b
        if self.last_undo is None:
            resume = self.sequence is not None and self.sequence.clean
            result = self.do_run(Flags(resume=resume, undo=True), Faults(), None)
            self.steps[-1].text = "closing " + self.steps[-1].text
            self.expect(not result.killed and self.last_undo is not None, ClosingRunError,
                        "the closing run without faults did not end every valid line done")
        assert self.last_undo is not None
        assert self.first_base is not None
        undo, sequence = self.last_undo
        now = bench.state()
        self.expect(undo.exists(), RestoreError, f"{undo.name} was not written")
        self.check_undo("run --undo-file", undo, sequence.base, sequence.touched, now)
        if self.history_clean:
            for task, fields in now.items():  # the same state for the second way back
                bench.write(task, fields)
            report = bench.dir / "report-undo.jsonl"
            code = bench.command("report", bench.out, "--undo-to", report)
            self.steps.append(Step(f"report OUT --undo-to R -> exit {code}"))
            self.expect(report.exists(), RestoreError, "report --undo-to wrote no file")
            self.check_undo("report --undo-to", report, self.first_base, self.touched_ever, now)

    def check_undo(self, how: str, undo: Path, base: Mapping[str, Mapping[str, Any]],
                   touched: set[str], now: Mapping[str, Mapping[str, Any]]) -> None:
        """Run `undo` without faults from `now`; check (b) against `base` and (c)."""
        bench = self.b
        lines = read_undo(undo)
        out = bench.dir / f"undo-out-{undo.stem}.jsonl"
        named: dict[str, set[str]] = {}
        restores: dict[str, dict[str, Any]] = {}
        for line in lines:
            body = line.get("body")
            if isinstance(line.get("task_id"), str) and isinstance(body, dict):
                named.setdefault(line["task_id"], set()).update(body)
                restores.setdefault(line["task_id"], {}).update(body)
        result = bench.run(undo, out) if lines else None
        self.steps.append(Step(f"{how}: {len(lines)} undo lines "
                               + "; ".join(f"{line.get('task_id')} {line.get('body')}"
                                           + (f" expect {line['expect']}" if "expect" in line
                                              else "") for line in lines)
                               + (f" -> exit {result.code}" if result else "")))
        after = bench.state()
        records = read_records(out)
        last_of: dict[str, Mapping[str, Any]] = {}
        for record in records:
            if isinstance(record.get("task_id"), str):
                last_of[record["task_id"]] = record
        line_fields: dict[str, set[str]] = {}
        for _, valid in self.valid():
            line_fields.setdefault(valid.task, set()).update(valid.body)
        for task, fields in sorted(line_fields.items()):
            theirs = {f for f in named.get(task, set()) if f in now[task]
                      and is_outside(f, now[task][f])}
            if theirs:  # (c)
                self.note(f"{how}: conflict checks")
                # A task that already has what its undo line sets needs no write: `unchanged`
                # (someone else put back the value from before the run), else `conflict`.
                already = all(now[task].get(f) == v for f, v in restores[task].items())
                ends = {"skipped/conflict", "skipped/unchanged"} if already \
                    else {"skipped/conflict"}
                self.expect(after[task] == now[task] and verdict(last_of.get(task)) in ends,
                            ConflictError,
                            f"(c) {how}: {task} holds someone else's {sorted(theirs)} "
                            f"({now[task]}): the undo must leave it and end "
                            f"{' or '.join(sorted(ends))}; it ended "
                            f"{verdict(last_of.get(task))}, task now {after[task]}")
                continue
            if task in touched:
                continue
            wanted = {f: base[task][f] for f in sorted(fields)}
            found = {f: after[task][f] for f in sorted(fields)}
            self.note(f"{how}: restore checks")
            self.expect(found == wanted, RestoreError,
                        f"(b) {how}: {task} should be back at {wanted} "
                        f"(before the first run), found {found}"
                        + ("" if task in named else " (the undo does not name it)"))

    def expect(self, ok: bool, kind: type[AssertionError], what: str) -> None:
        """Raise `kind` (one class per invariant: hypothesis reports each apart) with the
        history as a scenario."""
        if not ok:
            raise kind(f"{what}\n\n{self.describe()}")

    def describe(self) -> str:
        """The history as a plain scenario."""
        text = ["tasks before: " + "; ".join(
            f"{t} speed_limit={f['speed_limit']}, name={f['name']}"
            for t, f in self.initial.items()), "input:"]
        text += [f"  line {i}: {line}" for i, line in enumerate(self.lines, 1)]
        text += [f"step {n}: {step.text}" for n, step in enumerate(self.steps, 1)]
        if self.bench is not None:
            text.append("tasks now: " + "; ".join(
                f"{t} speed_limit={f['speed_limit']}, name={f['name']}"
                for t, f in self.b.state().items()))
        return "\n".join(text)


def run_histories(examples: int, steps: int, *, derandomize: bool) -> tuple[int, float]:
    """Run `examples` histories of at most `steps` steps; (histories, seconds)."""
    History.checks = {}
    counted = [0]

    class Counted(History):
        def __init__(self) -> None:
            super().__init__()
            counted[0] += 1

    start = time.monotonic()
    run_state_machine_as_test(Counted, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        derandomize=derandomize, database=None, report_multiple_bugs=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow explain
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much]))
    return counted[0], time.monotonic() - start


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("BATCHSMS_", "HUAWEICLOUD_SDK_", "CLOUD_SDK_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BATCHSMS_AUTH_TOKEN", "model-token")


@pytest.mark.timeout(900)  # a failure is shrunk to a short history: that takes minutes
def test_random_histories_keep_the_invariant() -> None:
    """A few dozen histories (the same ones every time): (a), (b), (c) hold."""
    count, seconds = run_histories(25, 5, derandomize=True)
    print(f"{count} histories in {seconds:.1f} s; checks: {History.checks}")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("shard", range(4))
def test_thousands_of_random_histories_keep_the_invariant(shard: int) -> None:
    """Thousands of histories over the shards (new ones every time): (a), (b), (c) hold."""
    count, seconds = run_histories(SLOW_EXAMPLES, 8, derandomize=False)
    print(f"shard {shard}: {count} histories in {seconds:.1f} s; checks: {History.checks}")


# -- the counterexamples found on main, as plain scenarios ------------------------------------


def scenario(initial: dict[str, dict[str, Any]], lines: list[Line]) -> History:
    history = History()
    history.start(initial, lines)
    return history


def play(history: History, *steps: tuple[Flags, Faults, int | None] | Outside) -> None:
    """Carry out `steps`, then the end checks; the bench is closed whatever happens."""
    try:
        for step in steps:
            if isinstance(step, Outside):
                history.do_outside(step)
            else:
                history.do_run(*step)
        history.finish()
    finally:
        history.b.close()


T0 = {"t0": {"speed_limit": 100, "name": "a"}}
NONE = Faults()


def test_nightly_resume_skip_unchanged_keeps_the_last_line() -> None:
    """Item 1: task at 100, lines 100 then 200. Run 1 `--skip-unchanged`: line 1 `unchanged`,
    line 2 succeeds (200). Run 2, the same command with `--resume`: line 1 must not be sent
    again (it was done), or the task goes back to 100."""
    nightly = Flags(resume=True, skip_unchanged=True)
    play(scenario(T0, [Line("t0", {"speed_limit": 100}), Line("t0", {"speed_limit": 200})]),
         (nightly, NONE, None), (nightly, NONE, None))


def test_resume_after_a_kill_sends_a_repeated_body_again() -> None:
    """Item 2: lines 300, 400, 300 for one task; killed after line 1's record; `--resume` must
    send lines 2 and 3 (line 3 is not done, whatever line 1's body)."""
    lines = [Line("t0", {"speed_limit": 300}), Line("t0", {"speed_limit": 400}),
             Line("t0", {"speed_limit": 300})]
    # writes of the first run: side-log 1, record 1, side-log 2 (killed there)
    play(scenario(T0, lines), (Flags(), NONE, 3), (Flags(resume=True), NONE, None))


def test_undo_keeps_the_original_value_of_a_write_whose_answer_was_lost() -> None:
    """Item 3: the write of line 1 is applied but its answer lost (`--max-attempts 1`):
    failed, maybe applied. The `--resume --undo-file` run reads the changed value; its undo
    must still restore the value before the first run."""
    lost = Faults(seed=1, lose=1.0)
    play(scenario(T0, [Line("t0", {"speed_limit": 300})]),
         (Flags(max_attempts=1), lost, None), (Flags(resume=True), NONE, None))


def test_undo_names_a_task_whose_write_landed_before_a_kill() -> None:
    """Item 4: killed with line 1's write landed and no record; `--resume --skip-unchanged
    --undo-file` finds it `unchanged`; its undo must still put the task back."""
    play(scenario(T0, [Line("t0", {"speed_limit": 300})]),
         (Flags(), NONE, 2), (Flags(resume=True, skip_unchanged=True), NONE, None))


def test_report_undo_to_does_not_depend_on_run_id_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 5: two runs killed in the same second, each with a write landed and no record; the
    second run's id sorts first. `report --undo-to` must restore the value before both."""
    ids = iter(["20260101T000000Z-ffffffff", "20260101T000000Z-00000000",
                *(f"20260101T000001Z-{n:08x}" for n in range(100))])
    monkeypatch.setattr(run_command, "new_run_id", lambda: next(ids))
    play(scenario(T0, [Line("t0", {"speed_limit": 300})]),
         (Flags(), NONE, 2), (Flags(), NONE, 2))


def test_undo_leaves_a_value_someone_else_wrote_after_the_run() -> None:
    """Item 7: ours 300, then someone else writes 999: the undo must end `skipped`/`conflict`
    and leave 999, not set the old 100."""
    play(scenario(T0, [Line("t0", {"speed_limit": 300})]),
         (Flags(), NONE, None), Outside("t0", "speed_limit", 999))


def test_resume_after_a_killed_fresh_run_sends_the_later_lines_again() -> None:
    """Found by the model (not in the issue's list): lines 200 then 100 for one task. Run 1
    ends both done (100). Run 2, without `--resume`, is killed after line 1 succeeded again
    (200). Run 3 `--resume`: line 2's `succeeded` record is run 1's, older than line 1's new
    one: line 2 must be sent again, or the task stays at 200 against an input that says 100.
    A rule of "the latest record of each line" alone skips it."""
    play(scenario(T0, [Line("t0", {"speed_limit": 200}), Line("t0", {"speed_limit": 100})]),
         (Flags(), NONE, None), (Flags(), NONE, 3), (Flags(resume=True), NONE, None))


def test_undo_of_a_resumed_sequence_restores_its_start() -> None:
    """Found by the model: the undo of a `--resume --undo-file` run covers its sequence, from
    the last run with `--undo-file` started without `--resume` (design of issue 18, B). Runs 1
    and 2 both set 200 (run 2 starts a new sequence at 200); run 3 `--resume` skips the line;
    its undo must leave 200 (the value before run 2), not go back to 100 (before run 1)."""
    play(scenario(T0, [Line("t0", {"speed_limit": 200})]),
         (Flags(), NONE, None), (Flags(), NONE, None), (Flags(resume=True), NONE, None))
