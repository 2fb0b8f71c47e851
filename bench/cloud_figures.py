"""Issue 20's figures on the simulator's rehearsal endpoints (ECS metadata, pod identity, IAM):
1 200 lines at ``--rate 50`` on temporary credentials that live 8 s, through each source (the
generations issued, the 401s, the project id on every request), and a metadata service that
stops answering mid-run (how long after it stopped, and after the last credentials expired, the
run ended, exit 3, every line accounted for). The clock-skew and proxy figures are the tests'
(``tests/test_clock_faketime.py``, ``tests/test_cloud_recipes.py``). Only 127.0.0.1 is used.

    .venv/bin/python bench/cloud_figures.py [--failing]   # --failing: the last figure only
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import orjson

import batchsms
from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState
from batchsms.simulator.server import running

PROJECT = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"
LINES, RATE, LIFETIME = 1200, 50.0, 8.0


def _updates(n: int) -> list[dict[str, object]]:
    return [{"task_id": f"t-{i}", "body": {"name": f"n-{i}"}} for i in range(n)]


async def generations(source: str, home: Path) -> str:
    state = MetadataState(lifetime=LIFETIME, projects={"cn-north-4": PROJECT})
    async with running(metadata=state, log_size=LINES * 2) as sim:
        assert sim.metadata_url is not None
        os.environ["BATCHSMS_METADATA_ENDPOINT"] = sim.metadata_url
        os.environ["HUAWEICLOUD_SDK_IAM_ENDPOINT"] = sim.metadata_url
        if source == "pod identity":
            token = home / "pod-token"
            token.write_text(state.pod_token)
            os.environ["HC_CONTAINER_CREDENTIALS_FULL_URI"] = sim.metadata_url + POD_IDENTITY_PATH
            os.environ["HC_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(token)
        started = time.monotonic()
        async with batchsms.Client(sim.url, region="cn-north-4", rate=RATE,
                                   concurrency=8) as client:
            outcomes = [o async for o in client.run(_updates(LINES))]
        took = time.monotonic() - started
        for name in ("HC_CONTAINER_CREDENTIALS_FULL_URI", "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
            os.environ.pop(name, None)
    puts = [r for r in sim.requests if r.method == "PUT"]
    succeeded = sum(o.status == "succeeded" for o in outcomes)
    keys = {r.headers["Authorization"].partition("Access=")[2].partition(",")[0] for r in puts}
    projects = {r.headers.get("X-Project-Id") for r in puts}
    return (f"{source:>13}: {succeeded}/{LINES} succeeded in {took:.1f} s; {len(puts)} PUTs, "
            f"{sum(r.status == 401 for r in puts)} answered 401; {len(state.issued)} "
            f"credentials issued, {len(keys)} keys signed with; X-Project-Id on every PUT: "
            f"{projects == {PROJECT}}")


def failing_source(home: Path) -> str:
    """The metadata service answers 500 once 20 PUTs were answered; credentials live 3 s."""
    state = MetadataState(lifetime=3.0)
    updates, out = home / "in.jsonl", home / "out.jsonl"
    updates.write_bytes(b"".join(orjson.dumps(u) + b"\n" for u in _updates(600)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HC_", "HUAWEICLOUD_"))}

    async def serve_and_run() -> tuple[int, float, float, str]:
        async with running(metadata=state) as sim:
            assert sim.metadata_url is not None
            env["BATCHSMS_METADATA_ENDPOINT"] = sim.metadata_url
            failed_at: list[float] = []

            async def fail_after_some_puts() -> None:
                # Not on a timer: the run's interpreter may take more than a second to start.
                while sum(r.method == "PUT" for r in sim.requests) < 20:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                failed_at.append(time.time())
                state.failing = 500

            args = [sys.executable, "-m", "batchsms", "run", str(updates), "--endpoint", sim.url,
                    "--out", str(out), "--rate", "50", "--no-progress", "--quiet"]
            async with anyio.create_task_group() as tg:
                tg.start_soon(fail_after_some_puts)
                done = await anyio.run_process(args, env=env, check=False)
                tg.cancel_scope.cancel()
            ended = time.time()
            expiry = max(i.expires_at for i in state.issued.values()) if state.issued else ended
            return (done.returncode, ended - failed_at[0], ended - expiry,
                    done.stderr.decode(errors="replace")[-2000:])

    code, after_failure, after_expiry, stderr = anyio.run(serve_and_run)
    if not out.exists():
        return f"metadata failing: exit {code}, no outcomes file: {stderr}"
    lines = {orjson.loads(x)["line"] for x in out.read_bytes().splitlines()}
    return (f"metadata failing after 20 PUTs (credentials of 3 s): exit {code}, the run ended "
            f"{after_failure:.1f} s after the source failed ({after_expiry:+.1f} s from the last "
            f"credentials' expiry, wall clock); {len(lines)}/600 lines have a record")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["HOME"] = str(home)
        for name in ("BATCHSMS_AUTH_TOKEN", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK",
                     "CLOUD_SDK_AK", "CLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID"):
            os.environ.pop(name, None)
        os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        sources = () if "--failing" in sys.argv[1:] else ("ecs agency", "pod identity")
        for source in sources:
            print(anyio.run(generations, source, home), flush=True)
        print(failing_source(home), flush=True)


if __name__ == "__main__":
    main()
