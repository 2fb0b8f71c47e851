"""Input that is not a regular file (FIFO, stdin), and stops that must reach the reader.

Each run is a real `batchsms run` process against a scripted loopback server, so signals are
delivered as they would be by systemd or a terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.jsonl import read_jsonl
from tests.processes import start_batchsms
from tests.servers import Answer, ScriptedServer, scripted_server

TOKEN = {"BATCHSMS_AUTH_TOKEN": "stream-test-token"}
GRACE_BOUND = 10.0  # seconds: the 5 s grace, plus a loaded 2-core box


def start(source: str, out: Path, url: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return start_batchsms("run", source, "--endpoint", url, "--out", str(out), "--rate", "0",
                          "--log-format", "json", "--no-progress", env=TOKEN,
                          stderr=subprocess.PIPE, **kwargs)


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes],
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def line(task_id: str) -> bytes:
    return orjson.dumps({"task_id": task_id, "body": {"speed_limit": 10}}) + b"\n"


def test_fifo_lines_are_sent_as_they_arrive_and_sigterm_in_a_pause_exits_143(
        tmp_path: Path, scripted: ScriptedServer) -> None:
    """A producer writes 3 lines and pauses: they are sent without waiting for a batch of 256;
    SIGTERM during the pause exits 143 promptly with one outcome per line read."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    proc = start(str(fifo), out, scripted.url)
    with fifo.open("wb") as producer:  # blocks until the run opens the FIFO
        producer.write(line("a") + line("b") + line("c"))
        producer.flush()
        wait_until(lambda: len(read_jsonl(out, missing_ok=True)) == 3, proc)
        assert {r["status"] for r in read_jsonl(out, missing_ok=True)} == {"succeeded"}
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(GRACE_BOUND)
        assert proc.stderr is not None
        proc.stderr.close()
    assert code == 143
    assert time.monotonic() - started < GRACE_BOUND
    assert sorted(r["line"] for r in read_jsonl(out, missing_ok=True)) == [1, 2, 3]
    assert len(scripted.received) == 3


def test_sigterm_before_the_producer_writes_anything_exits_143(tmp_path: Path,
                                                               scripted: ScriptedServer) -> None:
    """The signal handlers are in place before the first byte is read."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    proc = start(str(fifo), out, scripted.url)
    with fifo.open("wb"):
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the run.started event: the loop is running
        assert b"run.started" in first, first
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GRACE_BOUND)
        proc.stderr.close()
    assert code == 143
    assert read_jsonl(out, missing_ok=True) == []
    assert scripted.received == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_an_endless_stream_of_invalid_lines(tmp_path: Path, signum: int,
                                                          code: int) -> None:
    """Every line invalid and no end in sight (a run reading its own outcomes looked like
    this): the signal stops the reader too, within the grace period."""
    out = tmp_path / "out.jsonl"
    with scripted_server(Answer()) as server:
        # One valid line first: a file whose first 100 lines are all invalid is refused whole.
        producer = subprocess.Popen(
            ["sh", "-c", """echo '{"task_id": "ok", "body": {"speed_limit": 1}}'; """
                         """exec yes '{"task_id": 1}'"""], stdout=subprocess.PIPE)
        assert producer.stdout is not None
        try:
            proc = start("-", out, server.url, stdin=producer.stdout)
            wait_until(lambda: out.exists() and out.stat().st_size > 100_000, proc)
            proc.send_signal(signum)
            started = time.monotonic()
            result = proc.wait(GRACE_BOUND)
            assert proc.stderr is not None
            proc.stderr.close()
        finally:
            producer.kill()
            producer.wait()
            producer.stdout.close()
        assert result == code
        assert time.monotonic() - started < GRACE_BOUND
        written = read_jsonl(out, missing_ok=True)
        assert {r["status"] for r in written if r["line"] > 1} == {"invalid"}
        numbers = sorted(r["line"] for r in written)
        assert numbers == list(range(1, len(numbers) + 1))  # one outcome per line read
        assert len(server.received) <= 1
