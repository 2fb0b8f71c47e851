"""README's "Running in Huawei Cloud" recipes, run as written under `env -i sh -c` against the
simulator's rehearsal endpoints (ECS metadata, pod identity, IAM): the ECS agency's cron line,
the CCE CronJob's command, and the proxy recipe through a real tinyproxy with a password. What
a test changes: where the job lives, `--region` given with the simulator's `--endpoint`, the
proxy's address, and the platform's variables (the metadata endpoint; CCE's pod identity)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState
from batchsms.simulator.server import running
from tests.jsonl import read_jsonl, write_jsonl
from tests.proxies import tinyproxy_running
from tests.servers import in_thread
from tests.test_recipes import fenced

PROJECT = "5f4e3d2c1b0a99887766554433221100"
REGION = "--region cn-north-4"
PROXY = "http://batch:proxy-password@proxy.corp.example:3128"


def _launcher(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "batchsms"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m batchsms "$@"\n')
    launcher.chmod(0o755)
    return bin_dir


def _recipe(kind: str) -> str:
    if kind == "pod identity":
        [line] = re.findall(r"^\s+- (cd /data && .*)$", fenced("yaml", "CronJob"),
                            flags=re.MULTILINE)
        return line
    holding = "# ECS agency" if kind == "ecs agency" else "# behind a proxy"
    return "\n".join(x for x in fenced("sh", holding).splitlines() if not x.startswith("#"))


@pytest.mark.parametrize("kind", ["ecs agency", "pod identity", "proxy", "proxy, no_proxy"])
def test_running_in_huawei_cloud(kind: str, tmp_path: Path) -> None:
    """`proxy, no_proxy`: the proxy recipe with the endpoint added to its NO_PROXY: the same run,
    no request through tinyproxy."""
    bypass = kind == "proxy, no_proxy"
    kind = "proxy" if bypass else kind
    script = _recipe(kind)
    if bypass:
        assert "NO_PROXY=.corp.example\n" in script
        script = script.replace("NO_PROXY=.corp.example\n", "NO_PROXY=.corp.example,127.0.0.1\n")
    assert REGION in script
    work = tmp_path / "work"
    work.mkdir()
    write_jsonl(work / "fleet.jsonl", [{"task_id": f"t-{i}", "body": {"name": f"n-{i}"}}
                                       for i in range(30)])
    state = MetadataState(lifetime=600, projects={"cn-north-4": PROJECT})
    bin_dir = _launcher(tmp_path)
    with in_thread(running(metadata=state, log_size=1000)) as sim:
        assert sim.metadata_url is not None
        # The proxy recipe reaches the rehearsal endpoints as `localhost`: the metadata host
        # always goes direct, and the simulator's 127.0.0.1 must not.
        platform = sim.metadata_url.replace("127.0.0.1", "localhost") if kind == "proxy" \
            else sim.metadata_url
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
               "BATCHSMS_METADATA_ENDPOINT": platform,
               "HUAWEICLOUD_SDK_IAM_ENDPOINT": platform}
        if kind == "pod identity":
            token = tmp_path / "pod-token"
            token.write_text(state.pod_token)
            env.update(HC_CONTAINER_CREDENTIALS_FULL_URI=sim.metadata_url + POD_IDENTITY_PATH,
                       HC_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token),
                       BATCHSMS_METADATA_ENDPOINT="http://127.0.0.1:9")
        script = (script.replace("/srv/batchsms", str(work)).replace("/data", str(work))
                  .replace(REGION, f"--endpoint {sim.url} {REGION}"))
        with _proxy(kind, tmp_path) as address:
            if address is not None:
                assert PROXY in script
                script = script.replace("proxy.corp.example:3128", address)
            result = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()),
                                     "sh", "-ec", script], cwd=tmp_path, capture_output=True,
                                    text=True, timeout=180, check=False)
        puts = [r for r in sim.requests if r.method in ("PUT", "GET")]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ListTasks limit 1: HTTP 200" in result.stdout
    assert f"{PROJECT} (IAM" in result.stdout
    assert {r["status"] for r in read_jsonl(work / "outcomes.jsonl")} == {"succeeded"}
    assert {r.headers.get("X-Project-Id") for r in puts} == {PROJECT}
    via = {"tinyproxy" in r.headers.get("Via", "") for r in puts}
    assert via == ({True} if kind == "proxy" and not bypass else {False})
    assert "proxy-password" not in result.stdout + result.stderr


def _proxy(kind: str, tmp_path: Path) -> AbstractContextManager[str | None]:
    if kind == "proxy":
        return tinyproxy_running(tmp_path, "batch", "proxy-password")
    return nullcontext()
