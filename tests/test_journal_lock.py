"""The lock on `--out` is on the file, not its name (CONTRACT §7, issue 18 item 8).

A run holds an exclusive `flock` on the journal itself. A second run — or `validate --out` —
on the same file, named any other way (a symlink, a hard link, a symlinked directory, an
absolute or a `..` path), exits 2 at once naming the holder's pid, and writes nothing into it.
The holder is a real child process (a run waiting on a hung server); the second is in-process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchsms.changes.undo_log import previous_log_path
from batchsms.journal.outcomes import beside, lock_outcomes
from tests import processes
from tests.jsonl import write_jsonl
from tests.processes import Here
from tests.servers import Hang, ScriptedServer, scripted_server

TOKEN = {"BATCHSMS_AUTH_TOKEN": "tok-lock-test"}


def _lines(path: Path, n: int) -> Path:
    return write_jsonl(path, ({"task_id": f"t{i}", "body": {"speed_limit": i}} for i in range(n)))


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class Holder:
    """A run holding `data/out.jsonl` (started from `cwd` = root, given `data/out.jsonl`)."""

    def __init__(self, root: Path, server: ScriptedServer) -> None:
        self.root = root
        self.source = _lines(root / "in.jsonl", 20)
        (root / "data" / "sub").mkdir(parents=True)
        self.out = root / "data" / "out.jsonl"
        self.server = server
        self.process = processes.start_batchsms(
            "run", str(self.source), "--endpoint", server.url, "--out", "data/out.jsonl",
            "--concurrency", "1", "--rate", "0", "--timeout", "600", "--log-format", "json",
            env=TOKEN, cwd=root)
        _wait_for(lambda: len(server.received) > 0)
        self.records = self.out.read_bytes()

    def check_untouched(self) -> None:
        assert self.process.poll() is None
        assert self.out.read_bytes() == self.records  # nothing of another run in it
        assert len(self.server.received) == 1  # and nothing sent


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Holder]:
    """One holder for the module: starting a child costs seconds on a loaded box."""
    with scripted_server(Hang(600)) as server:
        held = Holder(tmp_path_factory.mktemp("held"), server)
        try:
            yield held
        finally:
            held.process.kill()  # how it stops is not these tests' point; SIGTERM waits a grace
            held.process.wait(30)


# Each name is made in `scratch` (the test's own directory) unless it must be beside the
# journal; it returns (the --out to give, the directory to run in).

def _symlink(h: Holder, scratch: Path) -> tuple[str, Path]:
    link = scratch / "elsewhere.jsonl"
    link.symlink_to(h.out)
    return str(link), scratch


def _relative_symlink_in_another_directory(h: Holder, scratch: Path) -> tuple[str, Path]:
    (scratch / "journal").symlink_to(os.path.relpath(h.out, scratch))
    return "journal", scratch


def _hard_link(h: Holder, scratch: Path) -> tuple[str, Path]:
    link = scratch / "hard.jsonl"
    os.link(h.out, link)
    return str(link), scratch


def _symlinked_directory(h: Holder, scratch: Path) -> tuple[str, Path]:
    (scratch / "dirlink").symlink_to(h.out.parent, target_is_directory=True)
    return str(scratch / "dirlink" / "out.jsonl"), scratch


def _absolute(h: Holder, scratch: Path) -> tuple[str, Path]:
    return str(h.out.resolve()), scratch  # the holder gave a relative path


def _dotdot(h: Holder, scratch: Path) -> tuple[str, Path]:
    return "sub/../out.jsonl", h.out.parent


def _dotdot_through_a_symlinked_directory(h: Holder, scratch: Path) -> tuple[str, Path]:
    # `up/..` is data/ on disk (up -> data/sub), `scratch` if read as text
    (scratch / "up").symlink_to(h.out.parent / "sub", target_is_directory=True)
    return "up/../out.jsonl", scratch


def _same_name(h: Holder, scratch: Path) -> tuple[str, Path]:
    return "data/out.jsonl", h.root


Name = Callable[[Holder, Path], tuple[str, Path]]
NAMES: list[Name] = [_same_name, _symlink, _relative_symlink_in_another_directory, _hard_link,
         _symlinked_directory, _absolute, _dotdot, _dotdot_through_a_symlinked_directory]


@pytest.mark.parametrize("name", NAMES, ids=lambda f: f.__name__.strip("_"))
def test_second_run_on_the_same_file_is_refused_whatever_its_name(
        holder: Holder, here: Here, tmp_path: Path, name: Name) -> None:
    out, cwd = name(holder, tmp_path)
    second = here("run", str(holder.source), "--endpoint", holder.server.url, "--out", out,
                  env=TOKEN, cwd=cwd)
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    assert "in use by another batchsms run" in second.stderr
    assert f"pid {holder.process.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    holder.check_untouched()


@pytest.mark.parametrize("name", [_symlink, _hard_link], ids=["symlink", "hard_link"])
def test_validate_out_does_not_write_into_a_journal_in_use(
        holder: Holder, here: Here, tmp_path: Path, name: Name) -> None:
    out, cwd = name(holder, tmp_path)
    result = here("validate", str(holder.source), "--out", out, cwd=cwd)
    assert result.returncode == 2, result.stderr
    assert f"pid {holder.process.pid}" in result.stderr
    holder.check_untouched()


def test_a_stale_pid_file_is_not_believed(tmp_path: Path) -> None:
    """The pid beside the journal names the holder only if it was written for this file."""
    out = tmp_path / "out.jsonl"
    held = lock_outcomes(out)
    try:
        beside(out, "lock").write_text("999999999 1 2\n")  # another file's, long ago
        with pytest.raises(Exception, match=rf"pid {os.getpid()}\)"):
            lock_outcomes(tmp_path / "." / "out.jsonl")
    finally:
        held.close()


def test_a_refused_run_leaves_no_journal_through_a_symlink(tmp_path: Path, here: Here) -> None:
    """The lock creates the journal; a run refused before writing removes it again — the file,
    not the symlink that named it."""
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)  # dangling until a run writes
    (tmp_path / "in.jsonl").write_text("task_id,speed_limit\nt1,1\n")  # a whole-file mistake
    result = here("run", str(tmp_path / "in.jsonl"), "--simulate", "--out", str(link))
    assert result.returncode == 2, result.stderr
    assert link.is_symlink()
    assert not target.exists()


def test_files_beside_the_journal_follow_the_file(tmp_path: Path) -> None:
    """The pid file and the undo side log are beside the file `--out` resolves to."""
    (tmp_path / "real").mkdir()
    (tmp_path / "dirlink").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real" / "out.jsonl").write_text("")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "real" / "out.jsonl")
    expected = tmp_path / "real" / ".out.jsonl.previous"
    for out in (tmp_path / "link.jsonl", tmp_path / "dirlink" / "out.jsonl",
                tmp_path / "real" / "x" / ".." / "out.jsonl"):
        assert previous_log_path(out) == expected
        assert beside(out, "lock") == tmp_path / "real" / ".out.jsonl.lock"
