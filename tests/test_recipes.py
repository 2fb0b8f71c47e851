"""The README's recipes, run as written: the simulator walk-through (two terminals: the
simulator, then `tasks`, `run` and `report` under `sh`), the cron line under `env -i sh -c`
after the one-time set-up, the systemd unit's ExecStart with its EnvironmentFile, the last two
against a simulator that checks the AK/SK signature of every request. The lines are read from
README.md, so they cannot drift; every file they leave in their directory must be one the
repository's .gitignore ignores."""

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

from batchsms.simulator.access import ExpectedCredentials
from batchsms.simulator.server import running
from batchsms.simulator.threaded import serve_in_thread
from tests.processes import simulator_process

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
AK, SK = "AKRECIPE0123456789", "sk-recipe-SECRET-abcdef0123456789"
# What a test may change in a recipe: where it lives, where it sends, where metrics go.
HOME_DIR, REGION, METRICS_DIR = ("/srv/batchsms", "--region cn-north-4",
                                 "/var/lib/node_exporter/textfile")
SIMULATOR_URL = "http://127.0.0.1:8080"  # the walk-through's; a test's simulator takes any port


def fenced(language: str, holding: str = "") -> str:
    """The one ```language block of the README (the one holding `holding`, if given)."""
    [block] = [b for b in re.findall(rf"^```{language}\n(.*?)^```", README,
                                     flags=re.MULTILINE | re.DOTALL) if holding in b]
    return str(block)


def adapted(text: str, home: Path, url: str | None = None) -> str:
    for fixed in (HOME_DIR, METRICS_DIR) + ((REGION,) if url else ()):
        assert fixed in text, f"the recipe no longer holds {fixed!r}: update this test"
    text = text.replace(HOME_DIR, str(home)).replace(METRICS_DIR, str(home / "textfile"))
    return text.replace(REGION, f"--endpoint {url}") if url else text


def set_up(home: Path) -> None:
    """The cron section's one-time set-up, as written (in `home`): it makes the metrics
    directory, which --metrics-file does not."""
    block = fenced("sh", "mkdir -p")
    assert not (home / "textfile").exists()
    result = subprocess.run(["sh", "-ec", adapted(block, home)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert (home / "textfile").is_dir()


def ignored_by_the_repository(directory: Path) -> None:
    """Every file a recipe left in `directory`, named as it would be in a checkout's top
    directory, is ignored by the repository's .gitignore."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: .gitignore cannot be asked")
    names = sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                   if p.is_file() and not p.is_relative_to(directory / "textfile"))  # /var/lib
    result = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index",
                             "--verbose", "--non-matching", "--stdin"], input="\n".join(names),
                            capture_output=True, text=True, timeout=30, check=False)
    not_ignored = [line.split("\t")[-1] for line in result.stdout.splitlines()
                   if line.startswith("::")]
    assert names
    assert not_ignored == [], f"written by a recipe, not in .gitignore: {not_ignored}"


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
    """A simulator expecting the AK/SK of credentials.env, and nothing else: served from a
    thread here (the cron and systemd recipes do not start it; the walk-throughs below run
    their own simulator line as written)."""
    with serve_in_thread(lambda: running(credentials=ExpectedCredentials(ak=AK, sk=SK),
                                         log_size=0)) as sim:
        yield sim.value.url


def night_went_well(home: Path, log: str) -> None:
    records = [orjson.loads(x) for x in (home / "nightly-outcomes.jsonl").read_bytes().splitlines()]
    assert [r["status"] for r in records] == ["succeeded"] * 20
    events = [orjson.loads(line) for line in log.splitlines()]  # --log-format json: all JSON
    assert [e["exit_code"] for e in events if e["event"] == "run.finished"] == [0]
    exit_codes = [s.value for f in text_string_to_metric_families(
        (home / "textfile" / "batchsms.prom").read_text()) for s in f.samples
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
    set_up(home)
    result = subprocess.run(["env", "-i", "sh", "-c", adapted(command, home, simulator)],
                            capture_output=True, text=True, timeout=120, check=False)
    log = (home / "batchsms.log").read_text()
    assert result.returncode == 0, log
    night_went_well(home, log)
    ignored_by_the_repository(home)


def test_systemd_exec_start_runs_as_written(home: Path, simulator: str) -> None:
    """systemd: EnvironmentFile= read as KEY=value lines, WorkingDirectory=, ExecStart= split
    as words (no shell), stderr to the journal."""
    set_up(home)
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


def run_script(script: str, tmp_path: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`script` under `sh -e` in `work` (made here), with `batchsms` (this interpreter's) on
    the PATH and nothing else in the environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "batchsms"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m batchsms "$@"\n')
    launcher.chmod(0o755)
    work.mkdir()
    return subprocess.run(["env", "-i", f"PATH={bin_dir}:/usr/bin:/bin", "sh", "-c",
                           "set -e\n" + script], cwd=work, capture_output=True, text=True,
                          timeout=300, check=False)


def test_simulator_walk_through_runs_as_written(tmp_path: Path) -> None:
    """Terminal 1's command starts the simulator (on a free port, not 8080); terminal 2's lines
    run as one `sh` script with `batchsms` on the PATH and nothing else in the environment: no
    credentials but the dummy token the walk-through exports."""
    block = fenced("sh", "# terminal 2")
    first, _, second = block.partition("# terminal 2")
    [serve] = [x for x in first.splitlines() if x.startswith("batchsms simulator")]
    words = shlex.split(serve)
    assert words[:4] == ["batchsms", "simulator", "--port", "8080"]
    assert SIMULATOR_URL in second
    work = tmp_path / "work"
    with simulator_process(*words[4:]) as sim:
        result = run_script(second.replace(SIMULATOR_URL, sim.url), tmp_path, work)
    assert result.returncode == 0, result.stderr[-3000:]
    fleet = [orjson.loads(x) for x in (work / "fleet.jsonl").read_bytes().splitlines()]
    assert len(fleet) == 100  # --generate 100
    records = [orjson.loads(x) for x in (work / "rehearsal.jsonl").read_bytes().splitlines()]
    assert sorted(r["task_id"] for r in records) == sorted(f["task_id"] for f in fleet)
    assert {r["status"] for r in records} == {"succeeded"}
    assert "100 succeeded" in result.stdout  # the report
    ignored_by_the_repository(work)


def test_night_time_full_speed_runs_as_written(tmp_path: Path) -> None:
    """README, "Night-time full speed for a fleet": the simulator line is served from here (a
    free port), the rest runs as one `sh` script with `batchsms` on the PATH, `--rate 0` added
    to each command that sends (the recipe's own pace is for the service): the fleet gets the
    rules, the second plan finds every task as wanted, and the undo clears them again."""
    block = fenced("sh", "--op speed-limit")
    [serve] = [x for x in block.splitlines() if x.startswith("batchsms simulator")]
    words = shlex.split(serve.partition("#")[0].rstrip(" &"))
    assert words[:2] == ["batchsms", "simulator"]
    assert SIMULATOR_URL in block
    work = tmp_path / "work"
    rest = block.replace(serve + "\n", "").replace("--endpoint $E", "--endpoint $E --rate 0")
    with simulator_process(*[w for w in words[2:] if w not in ("--port", "8080")]) as sim:
        result = run_script(rest.replace(SIMULATOR_URL, sim.url), tmp_path, work)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [orjson.loads(x) for x in (work / "night-out.jsonl").read_bytes().splitlines()]
    assert len(records) == 120
    assert {(r["status"], r["op"]) for r in records} == {("succeeded", "speed-limit")}
    assert "120 lines: 120 would change" in result.stdout  # the first plan
    assert "120 lines: 0 would change, 120 already as wanted" in result.stdout  # the second
    undone = [orjson.loads(x) for x in (work / "undo-out.jsonl").read_bytes().splitlines()]
    assert {r["status"] for r in undone} == {"succeeded"}
    assert len(undone) == 120
    ignored_by_the_repository(work)
