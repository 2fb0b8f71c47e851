"""The `--resume` rule (issue 18 items 1, 2; README "Resume and the lock"): a line is (number,
task, body); per task, in file order, lines are skipped only until the task's first line not
done, which is sent with every later line of its task. Against the simulator in a thread, with
the CLI in this process; the index itself (`batchsms.journal.resume`) as pure unit tests; its memory
with a real child."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchsms.journal.outcomes import JournalScan, Outcome, OutcomeWriter, Status
from batchsms.journal.resume import MAX_LINE, ResumeIndex
from batchsms.lines.bodies import Planned, checked_lines
from batchsms.simulator import Fleet
from batchsms.simulator.threaded import SimThread, simulator_in_thread, simulator_thread
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import Here, batchsms, peak_rss_kib

TOKEN = {"BATCHSMS_AUTH_TOKEN": "resume-rule-token"}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimThread]:
    """Tasks t (speed_limit 0) and u (speed_limit 0); the last requests kept."""
    fleet = Fleet.from_jsonl(write_jsonl(tmp_path / "fleet.jsonl", [
        {"id": "t", "speed_limit": 0}, {"id": "u", "speed_limit": 0}]))
    with simulator_thread(fleet=fleet, log_size=1000) as thread:
        yield thread


def line(task_id: str, speed: Any) -> dict[str, Any]:
    return {"task_id": task_id, "body": {"speed_limit": speed}}


def planned(source: Path) -> list[Planned]:
    return [item for item in checked_lines(str(source), {}) if isinstance(item, Planned)]


def journal(out: Path, *records: tuple[Planned, Status, str | None]) -> None:
    """A hand-made journal (as a killed or failed earlier run leaves it)."""
    writer = OutcomeWriter(out)
    try:
        for item, status, code in records:
            writer.write(Outcome("r0", item.number, item.task_id, item.ref, status,
                                 error_code=code, body_sha256=item.sha256))
    finally:
        writer.close()


def run(here: Here, source: Path, out: Path, url: str, *extra: str) -> int:
    result = here("run", str(source), "--endpoint", url, "--out", str(out), "--rate", "0",
                  "--no-progress", "--log-format", "json", *extra, env=TOKEN)
    return result.returncode


def puts(sim: SimThread) -> list[tuple[str | None, Any]]:
    """(task, speed_limit) of every PUT the simulator received, in order."""
    return sim.call(lambda: [(r.task_id, orjson.loads(r.body)["speed_limit"])
                             for r in sim.handle.requests if r.method == "PUT"])


def speed(sim: SimThread, task_id: str) -> Any:
    shown = sim.call(lambda: sim.handle.tasks.show(task_id))
    assert shown is not None
    return shown["speed_limit"]


def last_run(out: Path) -> dict[int, tuple[str, str | None]]:
    records = read_jsonl(out)
    run_id = records[-1]["run_id"]
    return {r["line"]: (r["status"], r["error_code"]) for r in records if r["run_id"] == run_id}


SKIP = ("skipped", "already_succeeded")
SENT = ("succeeded", None)


def test_nightly_resume_skip_unchanged_keeps_the_last_line(
        tmp_path: Path, here: Here, sim: SimThread) -> None:
    """Issue 18 item 1: task at 0, lines 0 then 500; the same `--resume --skip-unchanged`
    command twice. The second run skips both lines (`unchanged` counts as done) and sends
    nothing: the task stays at 500 (it was put back to 0 before)."""
    source = write_jsonl(tmp_path / "in.jsonl", [line("t", 0), line("t", 500)])
    out = tmp_path / "out.jsonl"
    assert run(here, source, out, sim.handle.url, "--skip-unchanged") == 0
    assert last_run(out) == {1: ("skipped", "unchanged"), 2: SENT}
    assert puts(sim) == [("t", 500)]
    assert run(here, source, out, sim.handle.url, "--resume", "--skip-unchanged") == 0
    assert last_run(out) == {1: SKIP, 2: SKIP}
    assert puts(sim) == [("t", 500)]  # no PUT in run 2
    assert speed(sim, "t") == 500


def test_resume_sends_a_repeated_body_again_after_the_task_moved_on(
        tmp_path: Path, here: Here, sim: SimThread) -> None:
    """Issue 18 item 2: lines 300, 400, 300 for one task; only line 1 succeeded (a run killed
    after it). `--resume` sends 400 then 300 -- the third line is not done because the first
    line had the same body -- and the task ends at 300, as the input says."""
    source = write_jsonl(tmp_path / "in.jsonl", [line("t", 300), line("t", 400), line("t", 300)])
    out = tmp_path / "out.jsonl"
    first, _, _ = planned(source)
    journal(out, (first, Status.SUCCEEDED, None))
    sim.call(lambda: sim.handle.tasks.apply("t", {"speed_limit": 300}))  # line 1 landed
    assert run(here, source, out, sim.handle.url, "--resume") == 0
    assert puts(sim) == [("t", 400), ("t", 300)]
    assert speed(sim, "t") == 300
    assert last_run(out) == {1: SKIP, 2: SENT, 3: SENT}


def test_resume_sends_a_task_again_from_its_first_line_not_done(
        tmp_path: Path, here: Here, sim: SimThread) -> None:
    """Task t: A (done), B (failed), C (done): A is skipped, B and C are sent again in order
    (C after B, so the task ends at C). Task u's done line is skipped: the rule is per task."""
    source = write_jsonl(tmp_path / "in.jsonl", [
        line("t", 100), line("t", 200), line("u", 7), line("t", 300)])
    out = tmp_path / "out.jsonl"
    a, b, u, c = planned(source)
    journal(out, (a, Status.SUCCEEDED, None), (b, Status.FAILED, "SMS.9999"),
            (u, Status.SUCCEEDED, None), (c, Status.SUCCEEDED, None))
    assert run(here, source, out, sim.handle.url, "--resume") == 0
    assert puts(sim) == [("t", 200), ("t", 300)]
    assert speed(sim, "t") == 300
    assert last_run(out) == {1: SKIP, 2: SENT, 3: SKIP, 4: SENT}


def test_an_invalid_line_does_not_open_its_task(
        tmp_path: Path, here: Here, sim: SimThread) -> None:
    """An invalid line of the task between two done lines is never sent and does not make the
    later done line be sent again."""
    source = write_jsonl(tmp_path / "in.jsonl", [
        line("t", 100), line("t", "fast"), line("t", 300)])
    out = tmp_path / "out.jsonl"
    a, c = planned(source)
    journal(out, (a, Status.SUCCEEDED, None), (c, Status.SUCCEEDED, None))
    assert run(here, source, out, sim.handle.url, "--resume") == 1  # the invalid line
    assert puts(sim) == []
    assert last_run(out) == {1: SKIP, 2: ("invalid", "validation"), 3: SKIP}


def test_a_record_of_another_line_or_input_does_not_count(
        tmp_path: Path, here: Here, sim: SimThread) -> None:
    """The journal of another input: (t, 100) succeeded as line 2, (u, 200) as line 1, and
    line 3 succeeded for t with another body. Now t 100, u 200, t 300 are lines 1-3: no line
    is done (same number, other task or body; same task and body, other number)."""
    source = write_jsonl(tmp_path / "in.jsonl", [line("t", 100), line("u", 200), line("t", 300)])
    out = tmp_path / "out.jsonl"
    moved = write_jsonl(tmp_path / "before.jsonl", [line("u", 200), line("t", 100), line("t", 999)])
    journal(out, *((item, Status.SUCCEEDED, None) for item in planned(moved)))
    assert run(here, source, out, sim.handle.url, "--resume") == 0
    assert sorted(puts(sim)) == [("t", 100), ("t", 300), ("u", 200)]
    assert [p for p in puts(sim) if p[0] == "t"] == [("t", 100), ("t", 300)]
    assert last_run(out) == {1: SENT, 2: SENT, 3: SENT}


def test_resume_after_a_run_cut_short_ends_every_task_on_its_last_line(
        tmp_path: Path, here: Here) -> None:
    """Every task has lines 300, 400, 300 (three passes over the fleet); the first run stopped
    half-way through the second pass (its journal cut there, the tasks as it left them).
    After `--resume` every task is at 300 (before: every one ended at 400)."""
    n = 200
    rows = [line(f"k{i}", speed) for speed in (300, 400, 300) for i in range(n)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    fleet = Fleet.from_jsonl(write_jsonl(tmp_path / "fleet.jsonl", [
        {"id": f"k{i}", "speed_limit": 0} for i in range(n)]))
    with simulator_thread(fleet=fleet) as thread:
        tasks = thread.handle.tasks
        assert run(here, source, out, thread.handle.url) == 0
        kept = [r for r in read_jsonl(out) if r["line"] <= n + n // 2]
        out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in kept))
        for i in range(n // 2):  # where the cut run left them: 400 set, the last 300 not yet
            thread.call(lambda task_id=f"k{i}": tasks.apply(task_id, {"speed_limit": 400}))
        assert run(here, source, out, thread.handle.url, "--resume") == 0
        assert {speed(thread, f"k{i}") for i in range(n)} == {300}


# -- the index, pure ----------------------------------------------------------------------------


def item(number: int, task_id: str, sha: str) -> Planned:
    return Planned(number, task_id, None, b"{}", sha)


def index_of(tmp_path: Path, *records: dict[str, Any] | bytes) -> ResumeIndex:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(r if isinstance(r, bytes) else orjson.dumps(r) + b"\n"
                              for r in records))
    return ResumeIndex.load(path)


def rec(number: Any, task_id: str, sha: str, status: str = "succeeded",
        code: str | None = None) -> dict[str, Any]:
    return {"run_id": "r", "line": number, "task_id": task_id, "status": status,
            "error_code": code, "body_sha256": sha}


def test_the_latest_record_of_a_line_decides(tmp_path: Path) -> None:
    index = index_of(tmp_path, rec(1, "t", "a"), rec(1, "t", "a", "failed", "SMS.1"),
                     rec(2, "t", "b", "failed"), rec(2, "t", "b"),
                     rec(3, "u", "c", "skipped", "unchanged"),
                     rec(4, "u", "d", "skipped", "interrupted"),
                     rec(5, "v", "e"), rec(5, "w", "e", "failed"))
    assert [index.done(n, t, s) for n, t, s in [(1, "t", "a"), (2, "t", "b"), (3, "u", "c"),
                                                (4, "u", "d"), (5, "v", "e")]] == [
        False, True, True, False, False]
    assert index.done_lines == 2


def test_decisions_follow_file_order_per_task(tmp_path: Path) -> None:
    index = index_of(tmp_path, rec(1, "t", "a"), rec(3, "t", "c"), rec(4, "u", "d"),
                     rec(5, "t", "e"))
    decide = index.run()
    lines = [item(1, "t", "a"), item(2, "t", "b"), item(3, "t", "c"), item(4, "u", "d"),
             item(5, "t", "e")]
    assert [decide.skips(x) for x in lines] == [True, False, False, True, False]
    assert decide.opened == 1
    again = index.run()  # a fresh decision per run
    assert again.skips(lines[0])
    assert again.opened == 0


def test_a_line_done_before_an_earlier_line_of_its_task_is_not_done(tmp_path: Path) -> None:
    """Lines 300 then 100, the task at 100: line 2 is `unchanged` while line 1 fails; a resume
    sends line 1 (succeeded) and is killed before line 2. Line 2's record is older than line
    1's: the task is at 300 now, so line 2 is not done (found by tests/test_model.py). Another
    task's lines in order stay done."""
    index = index_of(tmp_path, rec(1, "t", "a", "failed"), rec(2, "t", "b", "skipped", "unchanged"),
                     rec(3, "u", "c"), rec(1, "t", "a"), rec(4, "u", "d"))
    decide = index.run()
    lines = [item(1, "t", "a"), item(2, "t", "b"), item(3, "u", "c"), item(4, "u", "d")]
    assert [index.done(x.number, x.task_id, x.sha256) for x in lines] == [True, False, True, True]
    assert [decide.skips(x) for x in lines] == [True, False, True, True]


def test_cut_garbled_and_absurd_records_count_for_nothing(tmp_path: Path) -> None:
    scan = JournalScan()
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [
        rec(MAX_LINE + 1, "t", "a"), rec(10**15, "t", "a"), rec(0, "t", "a"), rec(-1, "t", "a"),
        rec("1", "t", "a"), rec(True, "t", "a"), {"line": 2, "task_id": "t", "status": "x"},
        rec(3, "t", "c")]) + b'{"run_id": "r", "line": 4, "ta')
    index = ResumeIndex.load(path, scan)
    assert scan.cut_lines == 1
    assert index.done_lines == 1
    assert index.done(3, "t", "c")
    assert not index.done(1, "t", "a")
    assert not index.done(MAX_LINE + 1, "t", "a")
    assert len(index._lines) <= 4


def test_no_journal_means_nothing_done(tmp_path: Path) -> None:
    index = ResumeIndex.load(tmp_path / "missing.jsonl")
    assert index.done_lines == 0
    assert not index.run().skips(item(1, "t", "a"))


# -- memory -------------------------------------------------------------------------------------


def _journal_and_input(directory: Path, journal_lines: int, input_lines: int) -> tuple[Path, Path]:
    directory.mkdir()
    source = directory / "in.jsonl"
    with source.open("wb") as f:
        for i in range(input_lines):
            f.write(orjson.dumps(line(f"task-{i:07d}", i % 1001)) + b"\n")
    out = directory / "out.jsonl"
    shas = [p.sha256 for p in planned(source)]
    with out.open("wb") as f:
        for i in range(journal_lines):
            f.write(orjson.dumps({
                "run_id": "r0", "line": i + 1, "task_id": f"task-{i:07d}", "ref": None,
                "status": "succeeded", "http_status": 200, "attempts": 1, "error_code": None,
                "error_msg": None, "errors": [], "request_id": "req", "body_sha256":
                shas[i % len(shas)], "elapsed_ms": 3, "finished_at": "2026-12-04T00:00:00.000Z",
                "maybe_applied": False}) + b"\n")
    return source, out


@pytest.mark.slow
def test_resume_index_memory_is_a_few_bytes_per_journal_line(tmp_path: Path) -> None:
    """`--resume` over a 300 000-line journal: the child's peak RSS is within 24 bytes per
    journal line of the same run over a 1 000-line journal (before: ~90 bytes per line, a set
    of 16-byte keys)."""
    small = _journal_and_input(tmp_path / "small", 1_000, 1_000)
    large = _journal_and_input(tmp_path / "large", 300_000, 1_000)
    peaks = []
    with simulator_in_thread() as handle:
        for source, out in (small, large):
            result = batchsms("run", str(source), "--endpoint", handle.url, "--out", str(out),
                              "--rate", "0", "--no-progress", "--resume", env=TOKEN,
                              peak_rss=True, timeout=300)
            assert result.returncode == 0, result.stderr[-2000:]
            peaks.append(peak_rss_kib(result))
        assert handle.stats.received == 0  # every line was done
    assert (peaks[1] - peaks[0]) * 1024 < 24 * 300_000, peaks
    shutil.rmtree(tmp_path / "large")
