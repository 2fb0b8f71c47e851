"""The in-process runner (`cli` fixture) gives what a child process would: consecutive calls in
one worker do not leak into each other, and stdin, env and cwd reach the command."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from tests.jsonl import read_jsonl
from tests.processes import InProcess, batchsms


def test_two_log_formats_back_to_back_do_not_leak(tmp_path: Path, cli: InProcess) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"task_id":"t1","body":{"speed_limit":5}}\n')
    common = ("run", str(source), "--simulate", "--rate", "0", "--no-progress")
    first = cli(*common, "--out", str(tmp_path / "a.jsonl"), "--log-format", "json", text=True)
    second = cli(*common, "--out", str(tmp_path / "b.jsonl"), "--log-format", "console",
                 text=True)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    json_lines = [line for line in first.stderr.splitlines() if line.strip()]
    assert json_lines, first.stderr
    records = [orjson.loads(line) for line in json_lines]  # each line one JSON object
    assert all(isinstance(r, dict) and r.get("event") and r.get("level") for r in records), \
        first.stderr
    console_lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert console_lines, second.stderr
    assert not any(line.startswith("{") for line in console_lines), second.stderr


def outcomes(path: Path) -> list[tuple[object, ...]]:
    return [(r["line"], r["task_id"], r["status"], r["error_msg"]) for r in read_jsonl(path)]


def test_stdin_env_and_cwd_reach_the_command_as_in_a_child(tmp_path: Path, cli: InProcess) -> None:
    lines = '{"task_id":"t1","body":{"speed_limit":5}}\n{"task_id":"t2"}\n'
    os.environ["BATCHSMS_AUTH_TOKEN"] = "leaked-from-the-developer"  # removed for the command
    try:
        args = ("validate", "-", "--out", "v.jsonl")
        inside = cli(*args, input=lines, cwd=tmp_path, text=True)
        assert "BATCHSMS_AUTH_TOKEN" in os.environ
    finally:
        del os.environ["BATCHSMS_AUTH_TOKEN"]
    inside_out = outcomes(tmp_path / "v.jsonl")
    (tmp_path / "v.jsonl").unlink()
    child = batchsms(*args, input=lines.encode(), cwd=tmp_path)
    assert (inside.returncode, inside.stdout, inside.stderr) == (
        child.returncode, child.stdout.decode(), child.stderr.decode())
    assert inside.returncode == 1, inside.stderr
    assert len(inside_out) == 2, inside.stderr
    assert inside_out == outcomes(tmp_path / "v.jsonl")
    assert os.getcwd() != str(tmp_path)
