"""`python -m batchsms.simulator` as a user runs it: a real process, a real port, real signals."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from batchsms.simulator.cli import add_simulator_arguments, add_simulator_parser, fault_config, main
from batchsms.simulator.faults import FaultConfig, Outage, OutageKind
from tests.processes import simulator_process


@contextmanager
def simulator(*args: str, env: Mapping[str, str] | None = None
              ) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m batchsms.simulator --port 0 ARGS`: (process, url) once it is listening."""
    with simulator_process(*args, env=env, module="batchsms.simulator", text=True) as sim:
        yield sim.process, sim.url


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_then_stops_cleanly_on_signal(signum: signal.Signals) -> None:
    """Prints `listening on URL`, serves the generated fleet, exits 0 on SIGTERM and SIGINT."""
    with simulator("--generate", "5", "--seed", "1") as (proc, url):
        status, page = fetch(f"{url}/v3/tasks")
        assert (status, page["count"]) == (200, 5)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=5)
        assert proc.returncode == 0
        assert "stopped after 1 requests (200: 1" in err


def test_cli_checks_credentials_from_the_environment() -> None:
    """BATCHSMS_SIMULATOR_TOKEN in the environment: no token, 401; the token, 200."""
    with simulator(env={"BATCHSMS_SIMULATOR_TOKEN": "cli-token"}) as (proc, url):
        status, error = fetch(f"{url}/v3/tasks")
        assert (status, error["error_code"]) == (401, "APIG.0301")
        status, _ = fetch(f"{url}/v3/tasks", headers={"X-Auth-Token": "cli-token"})
        assert status == 200
        proc.terminate()
        proc.communicate(timeout=5)
        assert proc.returncode == 0


def test_cli_serves_a_fleet_file(tmp_path: Path) -> None:
    """--fleet FILE: its tasks exist, others are 404."""
    path = tmp_path / "fleet.jsonl"
    path.write_text('{"id": "t1", "speed_limit": 77}\n', encoding="utf-8")
    with simulator("--fleet", str(path)) as (proc, url):
        status, task = fetch(f"{url}/v3/tasks/t1")
        assert (status, task["speed_limit"]) == (200, 77)
        status, error = fetch(f"{url}/v3/tasks/t2")
        assert (status, error["error_code"]) == (404, "SMS.1801")
        proc.terminate()
        proc.communicate(timeout=5)


def test_cli_unreadable_fleet_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing --fleet file is a usage error: one line on stderr, exit 2."""
    assert main(["--port", "0", "--fleet", str(tmp_path / "missing.jsonl")]) == 2
    assert "--fleet" in capsys.readouterr().err


def test_cli_bad_option_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Out-of-range knobs are refused by the parser."""
    for argv in (["--fail-rate", "1.5"], ["--latency-ms", "9-3"], ["--throttle-rate", "0"],
                 ["--generate", "5", "--fleet", "x"], ["--port", "70000"],
                 ["--outage", "10"], ["--outage", "5+5:refuse@0.5"], ["--outage", "5+5:200"],
                 ["--quota", "0"], ["--quota-burst", "0.5"], ["--throttle-random", "2"],
                 ["--forbid-from", "0"], ["--forbid-rate", "-1"], ["--ignore-field", "a..b"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    capsys.readouterr()


def test_add_simulator_parser_wires_the_subcommand() -> None:
    """batchsms.cli can mount the command: every option parses under `simulator`."""
    parser = argparse.ArgumentParser(prog="batchsms")
    add_simulator_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["simulator", "--port", "0", "--generate", "3", "--seed", "9",
                              "--fail-rate", "0.1", "--throttle-rate", "20", "--retry-after", "2",
                              "--latency-ms", "5-10", "--reset-rate", "0.05",
                              "--hang-rate", "0.01", "--hang-ms", "1000"])
    assert args.command == "simulator"
    assert (args.host, args.port, args.generate, args.seed) == ("127.0.0.1", 0, 3, 9)
    assert args.latency_ms == (5.0, 10.0)
    assert (args.fail_rate, args.throttle_rate, args.retry_after) == (0.1, 20.0, 2.0)


def test_every_trouble_option_reaches_the_fault_config() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    args = parser.parse_args([
        "--seed", "4", "--throttle-rate", "20", "--throttle-count-all", "--throttle-random", "0.1",
        "--quota", "50", "--quota-burst", "5", "--outage", "10+20:503@0.3",
        "--outage", "40+10:refuse", "--outage", "60+5:close", "--forbid-rate", "0.01",
        "--forbid-from", "100", "--ignore-field", "speed_limit",
        "--ignore-field", "target_server.name", "--lose-rate", "0.2", "--late-rate", "0.1",
        "--late-ms", "500"])
    assert fault_config(args) == FaultConfig(
        seed=4, throttle_rate=20, throttle_count_all=True, throttle_random=0.1, quota_rate=50,
        quota_burst=5, forbid_rate=0.01, forbid_from=100,
        outages=(Outage(10, 20, share=0.3), Outage(40, 10, OutageKind.REFUSE),
                 Outage(60, 5, OutageKind.CLOSE)),
        ignore_fields=("speed_limit", "target_server.name"), lose_rate=0.2, late_rate=0.1,
        late_ms=500)
    assert fault_config(parser.parse_args([])) == FaultConfig(seed=0)


def test_cli_outage_and_forbid_over_http() -> None:
    """A status outage from the first request, then (after it) a 403 from the 3rd request on."""
    with simulator("--outage", "0+0.3:502", "--forbid-from", "3") as (proc, url):
        status, error = fetch(f"{url}/v3/tasks")
        assert (status, error["error_code"]) == (502, "APIG.0201")
        time.sleep(0.4)
        status, _ = fetch(f"{url}/v3/tasks")
        assert status == 200
        status, error = fetch(f"{url}/v3/tasks")
        assert (status, error["error_code"]) == (403, "SMS.9004")
        proc.terminate()
        proc.communicate(timeout=5)


def test_seed_changes_the_faults_not_the_generated_fleet() -> None:
    """`--seed` drives the faults only: a fleet file listed under one seed is still there under
    another (seed 3 made every task 404); `--fleet-seed` draws other ids."""
    listings = []
    for args in (["--seed", "0"], ["--seed", "3"], ["--fleet-seed", "5"]):
        with simulator("--generate", "20", *args) as (proc, url):
            status, page = fetch(f"{url}/v3/tasks?limit=200")
            assert status == 200
            listings.append(page["tasks"])
            if args == ["--seed", "3"]:
                status, task = fetch(f"{url}/v3/tasks/{listings[0][0]['id']}")
                assert (status, task["id"]) == (200, listings[0][0]["id"])
            proc.terminate()
            proc.communicate(timeout=5)
    assert listings[0] == listings[1]  # ids and every field
    assert {t["id"] for t in listings[0]}.isdisjoint({t["id"] for t in listings[2]})
