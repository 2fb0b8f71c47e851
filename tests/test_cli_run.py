"""`batchsms run` as a user meets it: exit codes, one-line errors, the lock, signals, dry-run."""

from __future__ import annotations

import signal
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import processes
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import Here
from tests.servers import Answer, Hang, scripted_server

SECRET_SK = "sk-SECRET-0123456789abcdef"
SECRET_TOKEN = "tok-SECRET-fedcba9876543210"


batchsms = partial(processes.batchsms, text=True)


def lines_file(path: Path, n: int) -> Path:
    return write_jsonl(path, ({"task_id": f"t{i}", "body": {"speed_limit": i % 1000}}
                              for i in range(n)))


def test_missing_credentials_is_one_line_and_exit_2(tmp_path: Path, here: Here) -> None:
    result = here("run", str(lines_file(tmp_path / "in.jsonl", 1)),
                      "--endpoint", "https://sms.example.invalid", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "credentials" in result.stderr.lower()
    assert not (tmp_path / "o").exists()


def test_half_a_key_pair_names_the_missing_variable(tmp_path: Path, here: Here) -> None:
    result = here("run", str(lines_file(tmp_path / "in.jsonl", 1)),
                      "--endpoint", "https://sms.example.invalid",
                      env={"HUAWEICLOUD_SDK_AK": "AKEXAMPLE"})
    assert result.returncode == 2
    assert "HUAWEICLOUD_SDK_SK" in result.stderr
    assert "AKEXAMPLE" not in result.stderr


@pytest.mark.parametrize("args", [
    ["--concurrency", "0"], ["--rate", "-1"], ["--max-attempts", "0"], ["--timeout", "0"],
    ["--abort-failure-ratio", "2"], ["--deadline", "tomorrow-ish"], ["--region", "mars-1"],
    ["--set", "speedlimit=5"], ["--set", "noequals"], ["--bogus"], ["--endpoint", "ftp://x"],
    ["--endpoint", "http://sms.example.com"], ["--grace", "-1"],
])
def test_bad_options_exit_2_without_traceback(tmp_path: Path, args: list[str], here: Here) -> None:
    source = lines_file(tmp_path / "in.jsonl", 1)
    if "--endpoint" not in args and "--region" not in args:
        args = [*args, "--endpoint", "https://sms.example.invalid"]
    result = here("run", str(source), *args, env={"BATCHSMS_AUTH_TOKEN": SECRET_TOKEN})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(("batchsms", "usage")), result.stderr


def test_dry_run_prints_bodies_and_no_secrets(tmp_path: Path, here: Here) -> None:
    source = lines_file(tmp_path / "in.jsonl", 3)
    env = {"HUAWEICLOUD_SDK_AK": "AKDRYRUN", "HUAWEICLOUD_SDK_SK": SECRET_SK,
           "BATCHSMS_AUTH_TOKEN": SECRET_TOKEN}
    result = here("run", str(source), "--dry-run", "--region", "cn-north-4",
                      "--set", "target_server.flavor=s6.large.2", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert printed[1] == {
        "line": 2, "method": "PUT", "url": "https://sms.cn-north-4.myhuaweicloud.com/v3/tasks/t1",
        "ref": None, "body_sha256": printed[1]["body_sha256"],
        "body": {"speed_limit": 1, "target_server": {"flavor": "s6.large.2"}}}
    for secret in (SECRET_SK, SECRET_TOKEN, "AKDRYRUN"):
        assert secret not in result.stdout + result.stderr
    assert not (tmp_path / "outcomes.jsonl").exists()  # dry-run writes no outcomes file


@pytest.mark.parametrize(("where", "cause"), [
    (["--region", "xx-nowhere-1"], "unknown --region 'xx-nowhere-1'"),
    (["--endpoint", "http://example.com"], "plain http is allowed only on loopback"),
])
def test_dry_run_refuses_the_endpoint_run_refuses(tmp_path: Path, here: Here, where: list[str],
                                                  cause: str) -> None:
    """`--dry-run` with an unknown `--region` (or a bad `--endpoint`) is exit 2, as `run` is
    (issue 23: it printed `https://{endpoint}` URLs and exited 0); none given is a rehearsal."""
    source = lines_file(tmp_path / "in.jsonl", 2)
    for dry in (["--dry-run"], []):
        result = here("run", str(source), *dry, *where, "--out", str(tmp_path / "o.jsonl"),
                      env={"BATCHSMS_AUTH_TOKEN": SECRET_TOKEN}, cwd=tmp_path)
        assert result.returncode == 2, (dry, result.stderr)
        assert cause in result.stderr
        assert result.stdout == ""
    rehearsal = here("run", str(source), "--dry-run", cwd=tmp_path)
    assert rehearsal.returncode == 0, rehearsal.stderr
    assert orjson.loads(rehearsal.stdout.splitlines()[0])["url"] == "https://{endpoint}/v3/tasks/t0"


def test_second_run_on_same_out_exits_2_naming_the_pid(tmp_path: Path, here: Here) -> None:
    source = lines_file(tmp_path / "in.jsonl", 20)
    out = tmp_path / "out.jsonl"
    with scripted_server(Hang(0.5)) as server:
        first = processes.start_batchsms(
            "run", str(source), "--endpoint", server.url, "--out", str(out), "--concurrency",
            "2", "--rate", "0", "--log-format", "json", env={"BATCHSMS_AUTH_TOKEN": SECRET_TOKEN})
        try:
            _wait_for(lambda: len(server.received) > 0)
            started = time.monotonic()
            second = here("run", str(source), "--endpoint", server.url, "--out", str(out),
                              env={"BATCHSMS_AUTH_TOKEN": SECRET_TOKEN})
            assert second.returncode == 2
            assert time.monotonic() - started < 5
            assert f"pid {first.pid}" in second.stderr
        finally:
            first.terminate()
            first.wait(30)


def _wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_run_and_every_line_gets_an_outcome(tmp_path: Path, signum: int,
                                                         code: int) -> None:
    source = lines_file(tmp_path / "in.jsonl", 300)
    out = tmp_path / "out.jsonl"
    with scripted_server(Hang(0.2)) as server:
        server.script("t5", Hang(30))  # still in flight when the grace period ends
        proc = processes.start_batchsms(
            "run", str(source), "--endpoint", server.url, "--out", str(out), "--concurrency",
            "8", "--rate", "0", "--log-format", "json", "--grace", "1",
            env={"BATCHSMS_AUTH_TOKEN": SECRET_TOKEN},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: len(server.received) >= 20)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == code, stderr
        records = read_jsonl(out)
        assert sorted(r["line"] for r in records) == list(range(1, 301))
        statuses = {r["status"] for r in records}
        assert "skipped" in statuses
        assert {r["error_code"] for r in records if r["status"] == "skipped"} == {"interrupted"}
        stuck = next(r for r in records if r["task_id"] == "t5")
        assert stuck["status"] == "failed"
        assert stuck["error_code"] == "interrupted"
        assert sum(r["attempts"] for r in records) == len(server.received)
        assert SECRET_TOKEN not in stdout + stderr
        events = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        [interrupted] = [e for e in events if e["event"] == "run.interrupted"]
        assert interrupted["grace_s"] == 1  # --grace reaches the signal watcher
        [finished] = [e for e in events if e["event"] == "run.finished"]
        assert "--resume" in finished["next"]  # how to finish, and how to see what was done
        assert f"batchsms report {out}" in finished["next"]


def test_simulate_runs_the_sample_fleet(tmp_path: Path, here: Here) -> None:
    out = tmp_path / "out.jsonl"
    root = Path(__file__).resolve().parent.parent
    result = here("run", str(root / "inputs" / "speed_limit_fleet.jsonl"), "--simulate",
                      "--out", str(out), "--rate", "0")
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == 50
    assert {r["status"] for r in records} == {"succeeded"}


def test_exit_1_when_some_lines_invalid(tmp_path: Path, here: Here) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"task_id": "a", "body": {"speed_limit": 1}}\nnot json\n')
    with scripted_server(Answer()) as server:
        result = here("run", str(source), "--endpoint", server.url, "--out",
                          str(tmp_path / "o.jsonl"), env={"BATCHSMS_AUTH_TOKEN": SECRET_TOKEN})
    assert result.returncode == 1
    assert [r["status"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["succeeded", "invalid"] or \
        [r["status"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["invalid", "succeeded"]


@pytest.mark.parametrize("problem", ["input is a directory", "bad --ca-bundle"])
def test_could_not_start_leaves_no_outcomes_file(tmp_path: Path, problem: str, here: Here) -> None:
    """Exit 2 means the run could not start: no outcomes file is created."""
    source = lines_file(tmp_path / "in.jsonl", 1)
    out = tmp_path / "o.jsonl"
    args = (["run", str(tmp_path), "--simulate"] if problem == "input is a directory" else
            ["run", str(source), "--simulate", "--ca-bundle", str(tmp_path / "absent.pem")])
    result = here(*args, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert not out.exists()


def test_simulate_refuses_broken_credentials(tmp_path: Path, here: Here) -> None:
    """--simulate needs no credentials, but credentials given and broken are still refused."""
    source = lines_file(tmp_path / "in.jsonl", 1)
    result = here("run", str(source), "--simulate", "--token-file", str(tmp_path / "none"),
                      "--out", str(tmp_path / "o.jsonl"), cwd=tmp_path)
    assert result.returncode == 2
    assert "--token-file" in result.stderr
