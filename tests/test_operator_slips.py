"""The mistakes an operator makes at 2 a.m., and what the tool must do with each (issue 11)."""

from __future__ import annotations

import gzip
import io
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from functools import partial
from pathlib import Path

import orjson
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import Progress

from batchsms.commands import logs
from batchsms.commands.progress import ProgressBar
from batchsms.journal.outcomes import Outcome, Status
from tests import processes
from tests.processes import Here

ROOT = Path(__file__).resolve().parent.parent
FLEET = ROOT / "inputs" / "speed_limit_fleet.jsonl"
IS_ROOT = os.geteuid() == 0


batchsms = partial(processes.batchsms, text=True)


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The single stderr line of a refusal, checked to name every needle."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def fleet_file(path: Path, n: int, body: bytes = b'{"speed_limit": 100}') -> Path:
    path.write_bytes(b"".join(b'{"task_id": "t%d", "body": %s}\n' % (i, body)
                              for i in range(n)))
    return path


def metric(path: Path, name: str) -> float:
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise KeyError(name)


# -- 1. an output is never an input --------------------------------------------------------


def test_run_out_same_as_input_is_refused(tmp_path: Path, here: Here) -> None:
    """`--out fleet.jsonl` on the input: exit 2 at once, the input untouched (it used to read
    its own records back for ever)."""
    source = fleet_file(tmp_path / "fleet.jsonl", 5)
    before = source.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    for out in (str(source), str(link), f"{tmp_path}/./fleet.jsonl"):
        result = here("run", str(source), "--simulate", "--out", out)
        assert result.returncode == 2
        one_line(result, "same file as the input")
    assert source.read_bytes() == before


def test_every_output_option_refuses_an_input(tmp_path: Path, here: Here) -> None:
    """validate --out, run --metrics-file, tasks --out, report --failed-to, and standard input
    that is the --out file: each exit 2 with one line."""
    source = fleet_file(tmp_path / "fleet.jsonl", 3)
    before = source.read_bytes()
    token = tmp_path / "token"
    token.write_text("tok")
    journal = tmp_path / "o.jsonl"
    assert here("run", str(source), "--simulate", "--out", str(journal)).returncode == 0
    hard = tmp_path / "hard.jsonl"
    os.link(journal, hard)
    cases = [
        ("validate", str(source), "--out", str(source)),
        ("run", str(source), "--simulate", "--patch", str(token), "--out", str(token)),
        ("run", str(source), "--simulate", "--out", str(tmp_path / "x"), "--metrics-file",
         str(source)),
        ("tasks", "--endpoint", "http://127.0.0.1:9", "--token-file", str(token), "--out",
         str(token)),
        ("report", str(journal), "--failed-to", str(hard)),
    ]
    for args in cases:
        result = here(*args)
        assert result.returncode == 2, args
        one_line(result, "same file as")
    with journal.open("rb") as stdin:
        result = batchsms("run", "-", "--simulate", "--out", str(journal), stdin=stdin)
    assert result.returncode == 2
    one_line(result, "same file as the input '-'")
    assert source.read_bytes() == before
    assert token.read_text() == "tok"


def test_two_outputs_not_created_yet_are_not_one_file(tmp_path: Path, here: Here) -> None:
    """`--out` is an input of `--metrics-file` and `--undo-file` (CONTRACT §4); on a first run,
    when none exists yet, the same file under another name is refused too, before any file is
    made (it used to get the metrics, or the undo lines, written over the journal)."""
    source = fleet_file(tmp_path / "fleet.jsonl", 3)
    (tmp_path / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    out = tmp_path / "o.jsonl"
    for other in (["--metrics-file", f"{tmp_path}/./o.jsonl"],
                  ["--undo-file", str(tmp_path / "dirlink" / "o.jsonl"),
                   "--allow-irreversible"]):
        result = here("run", str(source), "--simulate", "--out", str(out), *other)
        assert result.returncode == 2, other
        one_line(result, "same file as --out")
        assert not out.exists()


def test_no_output_is_a_file_kept_beside_the_journal(tmp_path: Path, here: Here) -> None:
    """The undo side log `.NAME.previous` and the lock `.NAME.lock` are inputs too: an
    `--undo-file`, `--metrics-file` or `report --undo-to` naming one is refused, and the file
    is left as it was (it used to be written over)."""
    source = fleet_file(tmp_path / "fleet.jsonl", 3)
    out = tmp_path / "o.jsonl"
    assert here("run", str(source), "--simulate", "--out", str(out), "--undo-file",
                str(tmp_path / "undo.jsonl")).returncode == 0
    side_log = tmp_path / ".o.jsonl.previous"
    kept = side_log.read_bytes()
    assert kept
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    for args, needle in [
        (("run", str(source), "--simulate", "--out", str(out), "--undo-file", str(side_log)),
         "the undo side log of --out"),
        (("run", str(source), "--simulate", "--out", str(tmp_path / "link" / "o.jsonl"),
          "--metrics-file", str(side_log)), "the undo side log of --out"),
        (("run", str(source), "--simulate", "--out", str(out), "--metrics-file",
          str(tmp_path / ".o.jsonl.lock")), "the lock of --out"),
        (("report", str(out), "--undo-to", str(side_log)),
         "the undo side log of an outcomes file"),
    ]:
        result = here(*args)
        assert result.returncode == 2, args
        one_line(result, needle)
        assert side_log.read_bytes() == kept


# -- 2. disk full: exit 4, one line, whole records -----------------------------------------


def _limit_file_size(limit: int) -> None:
    # The kernel sends SIGXFSZ at the limit; ignored, the write fails with EFBIG instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_journal_write_failure_is_exit_4_with_one_line(tmp_path: Path, fmt: str) -> None:
    """The journal hits the file size limit mid-run: exit 4, one line naming the file and the
    cause, no traceback, metrics written, and only whole records in the journal."""
    source = fleet_file(tmp_path / "in.jsonl", 3000)
    out = tmp_path / "o.jsonl"
    metrics = tmp_path / "m.prom"
    result = batchsms("run", str(source), "--simulate", "--rate", "0", "--out", str(out),
                      "--metrics-file", str(metrics), "--log-format", fmt, "--no-progress",
                      preexec_fn=lambda: _limit_file_size(64 * 1024), timeout=120)
    assert result.returncode == 4, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "File too large" in line]
    assert len(said) == 1, result.stderr[-2000:]
    assert str(out) in said[0]
    if fmt == "json":
        events = [orjson.loads(line) for line in result.stderr.splitlines()]
        assert [e["event"] for e in events if e["level"] == "error"] == ["run.broken"]
    else:
        assert said[0].startswith("batchsms: cannot write outcomes file")
    data = out.read_bytes()
    assert 0 < len(data) <= 64 * 1024
    assert data.endswith(b"\n")
    records = [orjson.loads(line) for line in data.splitlines()]
    assert len(records) < 3000
    assert metric(metrics, "batchsms_run_exit_code") == 4


def test_validate_out_write_failure_is_exit_4(tmp_path: Path) -> None:
    """`validate --out` on a full disk: the same one line and exit 4."""
    source = fleet_file(tmp_path / "in.jsonl", 3000)
    out = tmp_path / "v.jsonl"
    result = batchsms("validate", str(source), "--out", str(out),
                      preexec_fn=lambda: _limit_file_size(64 * 1024))
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    assert f"cannot write outcomes file {str(out)!r}: File too large" in result.stderr


# -- 3. every output path checked up front -------------------------------------------------


def test_output_paths_are_checked_up_front(tmp_path: Path, here: Here) -> None:
    """A missing directory, or a parent that is a regular file: one line naming the path and
    the cause, before any request."""
    token = tmp_path / "token"
    token.write_text("tok")
    plain = tmp_path / "plain"
    plain.write_text("")
    journal = tmp_path / "o.jsonl"
    journal.write_text("")
    tasks = ("tasks", "--endpoint", "http://127.0.0.1:9", "--token-file", str(token), "--out")
    for args, needles in [
        ((*tasks, str(tmp_path / "nodir" / "f.jsonl")), ("nodir", "No such file")),
        ((*tasks, str(plain / "f.jsonl")), ("f.jsonl", "is not a directory")),
        (("report", str(journal), "--failed-to", str(plain / "r.jsonl")),
         ("--failed-to", "is not a directory")),
        (("run", str(FLEET), "--simulate", "--out", str(tmp_path / "nodir" / "x")),
         ("--out", "nodir", "No such file")),
    ]:
        result = here(*args)
        assert result.returncode == 2, args
        assert ".lock" not in one_line(result, *needles)


NOBODY = 65534


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """`batchsms ARGS` in a child that has dropped root for nobody: file modes stop it."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *processes.BATCHSMS, *args],
                          env=processes.clean_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)


def test_unwritable_output_directory_is_refused(tmp_path: Path, here: Here) -> None:
    """`tasks --out` and `report --failed-to` into a read-only directory: one line, exit 2.
    Modes do not stop root, so as root (as on CI) the commands run as nobody, in a directory
    nobody can reach (pytest's own is root's alone)."""
    run = as_nobody if IS_ROOT else here
    if IS_ROOT:
        tmp_path = Path(tempfile.mkdtemp())
        tmp_path.chmod(0o755)
    try:
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o555)
        token = tmp_path / "token"
        token.write_text("tok")
        journal = tmp_path / "o.jsonl"
        journal.write_text("")
        if IS_ROOT:
            for owned in (token, journal):
                os.chown(owned, NOBODY, NOBODY)
        for args in [("tasks", "--endpoint", "http://127.0.0.1:9", "--token-file", str(token),
                      "--out", str(locked / "f.jsonl")),
                     ("report", str(journal), "--failed-to", str(locked / "r.jsonl"))]:
            result = run(*args)
            assert result.returncode == 2, result.stderr
            one_line(result, "permission denied")
        assert list(locked.iterdir()) == []  # nothing was written, not even a lock
    finally:
        if IS_ROOT:
            shutil.rmtree(tmp_path)


# -- 5. the metrics file on every exit -----------------------------------------------------


def test_metrics_written_when_the_run_cannot_start(tmp_path: Path, here: Here) -> None:
    """Exit 2 still writes the metrics file, keeping the last success of the previous one."""
    metrics = tmp_path / "m.prom"
    metrics.write_text("# TYPE batchsms_last_success_timestamp_seconds gauge\n"
                       'batchsms_last_success_timestamp_seconds{batch="m"} 1.7e9\n')
    result = here("run", str(tmp_path / "missing.jsonl"), "--simulate", "--out",
                      str(tmp_path / "o.jsonl"), "--metrics-file", str(metrics))
    assert result.returncode == 2
    assert metric(metrics, "batchsms_run_exit_code") == 2
    assert metric(metrics, "batchsms_last_success_timestamp_seconds") == 1.7e9
    result = here("run", str(FLEET), "--endpoint", "https://sms.example.invalid", "--out",
                      str(tmp_path / "o.jsonl"), "--metrics-file", str(metrics),
                      "--deadline", "garbage")
    assert result.returncode == 2
    assert metric(metrics, "batchsms_last_success_timestamp_seconds") == 1.7e9


# -- 6. json logs are pure JSON; --quiet ---------------------------------------------------


def test_json_logs_are_pure_json_with_one_summary_event(tmp_path: Path, here: Here) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(FLEET.read_bytes() + b'{"task_id": "x", "body": {"speedlimit": 1}}\n')
    result = here("run", str(source), "--simulate", "--rate", "0", "--out",
                      str(tmp_path / "o.jsonl"), "--log-format", "json")
    assert result.returncode == 1
    events = [orjson.loads(line) for line in result.stderr.splitlines()]  # every line JSON
    finished = [e for e in events if e["event"] == "run.finished"]
    assert len(finished) == 1
    assert finished[0]["succeeded"] == 50
    assert finished[0]["invalid"] == 1
    assert finished[0]["exit_code"] == 1
    assert finished[0]["errors"] == {"validation": 1}


def test_json_logs_refusal_is_one_json_event(tmp_path: Path, here: Here) -> None:
    result = here("run", str(tmp_path / "missing.jsonl"), "--simulate", "--log-format",
                      "json")
    assert result.returncode == 2
    [event] = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert event["event"] == "run.refused"
    assert "missing.jsonl" in event["error"]


def test_json_logs_refusal_of_a_bad_option_is_one_json_event(tmp_path: Path,
                                                              here: Here) -> None:
    """The config is built once logging is set up (commands/run `refusals`): a value refused
    while building it is told as JSON too, and the metrics file is still written."""
    metrics = tmp_path / "m.prom"
    result = here("run", str(FLEET), "--simulate", "--out", str(tmp_path / "o.jsonl"),
                  "--deadline", "garbage", "--log-format", "json", "--metrics-file", str(metrics))
    assert result.returncode == 2
    [event] = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert event["event"] == "run.refused"
    assert "--deadline" in event["error"]
    assert metric(metrics, "batchsms_run_exit_code") == 2
    assert not (tmp_path / "o.jsonl").exists()


def test_quiet_keeps_warnings_and_the_summary() -> None:
    stream = io.StringIO()
    logs.configure("json", stream, quiet=True)
    try:
        log = structlog.get_logger("batchsms")
        log.info("run.started")
        log.info("task.retry", line=1)
        log.debug("task.retry", line=2)
        log.warning("task.failed", line=3)
        log.info("run.finished", succeeded=2)
    finally:
        logs.configure("json", io.StringIO())
    events = [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["task.failed", "run.finished"]


# -- 7. whole-file mistakes refuse instead of running --------------------------------------


@pytest.mark.parametrize(("content", "extra", "cause"), [
    (b'[\n  {"task_id": "t1", "body": {"speed_limit": 1}},\n  {"task_id": "t2"}\n]\n', (),
     "input must be JSON Lines: one object per line"),
    (b'[{"task_id": "t1", "body": {"speed_limit": 1}}]\n', (),
     "input must be JSON Lines: one object per line"),
    (b"task_id,speed_limit\nt1,100\nt2,200\n", (), "input must be JSON Lines"),
    # A corrupt or cut gzip stream was first called "not CSV" (issue 23).
    (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, (), "the gzip stream is corrupt"),
    (gzip.compress(b'{"task_id": "t1", "body": {"speed_limit": 1}}\n' * 500, mtime=0)[:40], (),
     "the gzip stream is cut short"),
    (b'{"task_id": "t1"}\n{"task_id": "t2", "ref": "b"}\n', (),
     "no body and no --set/--patch"),
    (b"".join(b'{"task_id": "t%d", "body": {"speedlimit": 1}}\n' % i for i in range(150)),
     (), "no line is valid"),
])
def test_whole_file_mistake_refused_before_sending(tmp_path: Path, content: bytes,
                                                   extra: tuple[str, ...], cause: str,
                                                   here: Here) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    out = tmp_path / "o.jsonl"
    result = here("run", str(source), "--simulate", "--out", str(out), *extra)
    assert result.returncode == 2
    refusal = one_line(result, cause, "nothing was sent")
    assert "gzip" not in cause or "CSV" not in refusal
    assert not out.exists()


def test_one_valid_line_among_the_first_100_runs(tmp_path: Path, here: Here) -> None:
    """A file with some good lines is a run with invalid lines (exit 1), not a refusal; the
    look-ahead lines are all sent or recorded, in order, from standard input too."""
    bad = b'{"task_id": "bad", "body": {"speedlimit": 1}}\n'
    content = bad * 99 + b'{"task_id": "good", "body": {"speed_limit": 1}}\n' + bad * 20
    out = tmp_path / "o.jsonl"
    result = here("run", "-", "--simulate", "--rate", "0", "--out", str(out),
                      input=content.decode())
    assert result.returncode == 1, result.stderr
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(r["line"] for r in records) == list(range(1, 121))
    assert [r["line"] for r in records if r["status"] == "succeeded"] == [100]


# -- 10. the smaller items -----------------------------------------------------------------


def test_help_and_no_arguments(here: Here) -> None:
    result = here()
    assert result.returncode == 2
    for command in ("run", "validate", "report", "tasks", "simulator"):
        assert command in result.stderr
    text = " ".join(here("run", "--help").stdout.split())
    assert "05:00" in text
    assert "attempts per line" in text
    assert "--quiet" in text


def test_deadline_in_the_past_is_refused(tmp_path: Path, here: Here) -> None:
    for past in ("2020-01-01T05:00", "0m"):
        result = here("run", str(FLEET), "--simulate", "--out", str(tmp_path / "o"),
                          "--deadline", past)
        assert result.returncode == 2
        one_line(result, "--deadline")
    assert not (tmp_path / "o").exists()


def test_resolved_deadline_is_logged(tmp_path: Path, here: Here) -> None:
    result = here("run", str(FLEET), "--simulate", "--rate", "0", "--out",
                      str(tmp_path / "o"), "--deadline", "2h", "--log-format", "json")
    assert result.returncode == 0
    events = [orjson.loads(line) for line in result.stderr.splitlines()]
    [deadline] = [e for e in events if e["event"] == "run.deadline_at"]
    assert 7100 < deadline["in_s"] <= 7200


def test_dry_run_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    source = fleet_file(tmp_path / "in.jsonl", 5000)
    proc = processes.start_batchsms("run", str(source), "--dry-run", stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline().startswith(b'{"line":1')
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(60) == 0
    assert err == b""


def test_tasks_refuses_empty_filters(here: Here) -> None:
    for option in ("--name", "--state", "--source-server-id"):
        result = here("tasks", "--endpoint", "http://127.0.0.1:9", option, "")
        assert result.returncode == 2
        one_line(result, f"{option} is empty")


def test_dot_segment_task_ids_are_invalid(tmp_path: Path, here: Here) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"task_id": "..", "body": {"speed_limit": 1}}\n'
                       b'{"task_id": ".", "body": {"speed_limit": 1}}\n'
                       b'{"task_id": "...", "body": {"speed_limit": 1}}\n')
    result = here("validate", str(source))
    assert result.returncode == 1
    assert result.stdout.count("dot segment") == 2
    assert "line 3" not in result.stdout


def _outcome(status: Status, code: str | None = None) -> Outcome:
    return Outcome("r", 1, "t", None, status, error_code=code)


def test_progress_bar_after_a_stop_is_not_complete() -> None:
    """Lines a stop never reached do not advance the bar; invalid lines are not 'failed'."""
    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    bar = ProgressBar(progress, total=5)
    for outcome in (_outcome(Status.SUCCEEDED), _outcome(Status.INVALID, "validation"),
                    _outcome(Status.FAILED, "interrupted"),
                    _outcome(Status.SKIPPED, "interrupted"),
                    _outcome(Status.SKIPPED, "interrupted")):
        bar(outcome)
    [task] = progress.tasks
    assert task.completed == 3
    assert task.fields == {"failed": 1, "invalid": 1}
