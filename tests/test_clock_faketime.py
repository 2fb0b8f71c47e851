"""A run on a host whose clock is 20 minutes off (libfaketime: the Debian package `faketime`,
installed by `.ci/run`), against a simulator that checks every AK/SK signature and its
`X-Sdk-Date` on the real clock (CONTRACT §6 "Clock"): every line succeeds, at most 2 requests
are rejected for the date, and one `clock.skew` warning names the offset."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from batchsms.simulator.access import ExpectedCredentials
from batchsms.simulator.server import running
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import clean_env
from tests.servers import in_thread

FAKETIME = shutil.which("faketime")
AK, SK = "AKSKEWED01234567", "sk-skewed-SECRET-0123456789"


@pytest.mark.skipif(FAKETIME is None, reason="faketime is not installed (apt-get install "
                    "faketime; .ci/run does)")
@pytest.mark.parametrize("offset", ["+20m", "-20m"])
def test_a_run_with_the_clock_20_minutes_off(offset: str, tmp_path: Path) -> None:
    assert FAKETIME is not None
    updates = tmp_path / "in.jsonl"
    write_jsonl(updates, [{"task_id": f"t-{i}", "body": {"name": f"n-{i}"}}
                          for i in range(60)])
    out = tmp_path / "out.jsonl"
    env = clean_env({"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK,
                     "HUAWEICLOUD_SDK_PROJECT_ID": "p-skew", "HOME": str(tmp_path),
                     "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    with in_thread(running(credentials=ExpectedCredentials(ak=AK, sk=SK),
                           log_size=1000)) as sim:
        result = subprocess.run(
            [FAKETIME, "-f", offset, sys.executable, "-m", "batchsms", "run", str(updates),
             "--endpoint", sim.url, "--out", str(out), "--rate", "0", "--log-format", "json",
             "--no-progress"], env=env, capture_output=True, text=True, timeout=120,
            check=False)
        statuses = [r.status for r in sim.requests]
    assert result.returncode == 0, result.stderr
    assert {r["status"] for r in read_jsonl(out)} == {"succeeded"}
    assert statuses.count(401) <= 2, statuses
    warnings = [event for line in result.stderr.splitlines() if line.startswith("{")
                and (event := orjson.loads(line)).get("event") == "clock.skew"]
    assert len(warnings) == 1, result.stderr
    assert 19 * 60 < abs(warnings[0]["offset_s"]) < 21 * 60
    assert SK not in result.stderr
