"""The README's nightly recipes, run as written: the cron line under `env -i sh -c`, the
systemd unit's ExecStart with its EnvironmentFile, both against a simulator that checks the
AK/SK signature of every request. The lines are read from README.md, so they cannot drift."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import simulator_process

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
AK, SK = "AKRECIPE0123456789", "sk-recipe-SECRET-abcdef0123456789"
# What a test may change in a recipe: where it lives, where it sends, where metrics go.
HOME_DIR, REGION, METRICS = ("/srv/batchsms", "--region cn-north-4",
                             "/var/lib/node_exporter/textfile/batchsms.prom")


def fenced(language: str) -> str:
    [block] = re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
    return str(block)


def adapted(text: str, home: Path, url: str) -> str:
    for fixed in (HOME_DIR, REGION, METRICS):
        assert fixed in text, f"the recipe no longer holds {fixed!r}: update this test"
    return (text.replace(HOME_DIR, str(home)).replace(REGION, f"--endpoint {url}")
            .replace(METRICS, str(home / "batchsms.prom")))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """/srv/batchsms: credentials.env, nightly.jsonl, and .venv/bin/batchsms."""
    (tmp_path / "credentials.env").write_text(
        f"HUAWEICLOUD_SDK_AK={AK}\nHUAWEICLOUD_SDK_SK={SK}\n"
        "HUAWEICLOUD_SDK_PROJECT_ID=0123456789abcdef0123456789abcdef\n")
    (tmp_path / "nightly.jsonl").write_bytes(b"".join(
        orjson.dumps({"task_id": f"night-{i}", "body": {"speed_limit": 100 + i}}) + b"\n"
        for i in range(20)))
    launcher = tmp_path / ".venv" / "bin" / "batchsms"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m batchsms "$@"\n')
    launcher.chmod(0o755)
    return tmp_path


@pytest.fixture
def simulator() -> Iterator[str]:
    """A simulator expecting the AK/SK of credentials.env, and nothing else."""
    with simulator_process(env={"BATCHSMS_SIMULATOR_AK": AK, "BATCHSMS_SIMULATOR_SK": SK}) as sim:
        yield sim.url


def night_went_well(home: Path, log: str) -> None:
    records = [orjson.loads(x) for x in (home / "nightly-outcomes.jsonl").read_bytes().splitlines()]
    assert [r["status"] for r in records] == ["succeeded"] * 20
    events = [orjson.loads(line) for line in log.splitlines()]  # --log-format json: all JSON
    assert [e["exit_code"] for e in events if e["event"] == "run.finished"] == [0]
    exit_codes = [s.value for f in text_string_to_metric_families(
        (home / "batchsms.prom").read_text()) for s in f.samples
        if s.name == "batchsms_run_exit_code"]
    assert exit_codes == [0]
    assert SK not in log


def test_cron_line_runs_as_written(home: Path, simulator: str) -> None:
    """cron runs the command with `sh -c` and next to no environment."""
    now = datetime.now().astimezone()
    if timedelta(0) <= now.replace(hour=5, minute=0, second=0) - now < timedelta(minutes=5):
        pytest.skip("the recipe's --deadline 05:00 is minutes away")
    [line] = [x for x in fenced("cron").splitlines() if x.strip() and not x.startswith("#")]
    command = line.split(None, 5)[5]  # after minute, hour, day, month, weekday
    assert "%" not in command  # cron would turn it into a newline
    result = subprocess.run(["env", "-i", "sh", "-c", adapted(command, home, simulator)],
                            capture_output=True, text=True, timeout=120, check=False)
    log = (home / "batchsms.log").read_text()
    assert result.returncode == 0, log
    night_went_well(home, log)


def test_systemd_exec_start_runs_as_written(home: Path, simulator: str) -> None:
    """systemd: EnvironmentFile= read as KEY=value lines, WorkingDirectory=, ExecStart= split
    as words (no shell), stderr to the journal."""
    unit = adapted(fenced("ini").replace("\\\n", " "), home, simulator)
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, flags=re.MULTILINE))
    env = {"PATH": "/usr/bin:/bin"}
    for raw in Path(settings["EnvironmentFile"]).read_text().splitlines():
        if raw.strip() and not raw.startswith("#"):
            key, _, value = raw.partition("=")
            env[key] = value
    result = subprocess.run(shlex.split(settings["ExecStart"]), cwd=settings["WorkingDirectory"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    night_went_well(home, result.stderr)
    assert "Persistent" not in settings  # see the README: a catch-up run at boot, by day
