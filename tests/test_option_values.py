"""Numbers and URLs no option can take: one line naming the option, exit 2, never a traceback
(issue 18 item 13).

`float()` accepts `nan`, `inf` and `1e400`, NaN passes every `<` test written as a refusal, a
duration can overflow the calendar, and `urlsplit` raises on a bad IPv6 host or port. Each value
below used to give a traceback and exit 1, or was taken (`--timeout nan`: a run that never times
out), for `run`, `plan` and `tasks` alike, and for `BATCHSMS_ENDPOINT` as for `--endpoint`;
`simulator --generate` with an absurd N filled the memory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jsonl import write_jsonl
from tests.processes import Here

TOKEN = "tok-option-values"
HUGE = "1" + "0" * 400

BAD: list[tuple[str, list[str], str]] = [  # (command, options, what the message names)
    *(("run", [option, value], option) for option, value in [
        ("--rate", "nan"), ("--rate", "inf"), ("--rate", "1e400"),
        ("--burst", "nan"), ("--burst", "inf"),
        ("--timeout", "nan"), ("--timeout", "inf"),
        ("--grace", "inf"),
        ("--max-outage", f"{HUGE}h"),
        ("--deadline", "999999999h"), ("--deadline", "99999999999999999999s"),
        ("--deadline", "0001-01-01T00:00"),
    ]),
    *(("run", ["--endpoint", url], "--endpoint") for url in [
        "http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:port", "https://[::1]:70000",
    ]),
    *(("plan", [option, value], option) for option, value in [
        ("--rate", "nan"), ("--rate", "inf"), ("--burst", "nan"), ("--timeout", "nan"),
        ("--timeout", "inf"), ("--endpoint", "http://[::1"), ("--endpoint", "http://127.0.0.1:99999"),
    ]),
    ("simulator", ["--generate", "99999999999999999999"], "--generate"),  # filled the memory
    *(("tasks", [option, value], option) for option, value in [
        ("--rate", "nan"), ("--rate", "inf"), ("--rate", "-1"), ("--timeout", "nan"),
        ("--timeout", "inf"), ("--timeout", "0"), ("--max-attempts", "0"),
        ("--endpoint", "http://[::1"), ("--endpoint", "http://127.0.0.1:99999"),
    ]),
]


def _command(command: str, options: list[str], source: Path, out: Path) -> list[str]:
    """The command with `options` last (argparse: the last one wins), and no network to reach:
    `run` and `plan` on the in-process simulator, `tasks` on a closed port, tried once."""
    target = [] if "--endpoint" in options else ["--simulate"]
    if command == "tasks":
        target = [] if "--endpoint" in options else ["--endpoint", "http://127.0.0.1:9"]
        return ["tasks", *target, "--out", str(out), "--max-attempts", "1", *options]
    if command == "simulator":
        return ["simulator", "--port", "0", *options]
    if command == "run":
        return ["run", str(source), *target, "--out", str(out), *options]
    return [command, str(source), *target, *options]


@pytest.mark.parametrize(("command", "options", "named"), BAD,
                         ids=[f"{c}{' '.join(['', *o])}"[:60] for c, o, _ in BAD])
def test_a_value_no_option_can_take_is_one_line_and_exit_2(
        tmp_path: Path, here: Here, command: str, options: list[str], named: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": "t1", "body": {"speed_limit": 1}}])
    result = here(*_command(command, options, source, tmp_path / "o.jsonl"),
                  env={"BATCHSMS_AUTH_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("batchsms:"), lines[0]
    assert named in lines[0], lines[0]
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("command", ["run", "plan", "tasks"])
@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999"])
def test_a_bad_endpoint_from_the_environment_names_the_variable(
        tmp_path: Path, here: Here, command: str, url: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": "t1", "body": {"speed_limit": 1}}])
    args = ["tasks"] if command == "tasks" else [command, str(source)]
    result = here(*args, env={"BATCHSMS_AUTH_TOKEN": TOKEN, "BATCHSMS_ENDPOINT": url},
                  cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "BATCHSMS_ENDPOINT" in lines[0], lines[0]
    assert url in lines[0]
